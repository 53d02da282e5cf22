"""Test switches: ``--ngspice=required|if_available|disabled`` (after VlsirTools)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--ngspice",
        default="if_available",
        choices=("required", "if_available", "disabled"),
        help="run tests marked 'ngspice': required (fail if missing), if_available, disabled",
    )


def _ngspice_available() -> bool:
    try:
        from spicebridge.engines import find_libngspice, find_ngspice

        find_libngspice()
        find_ngspice()
        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("--ngspice")
    if mode == "required":
        if not _ngspice_available():
            raise pytest.UsageError("--ngspice=required but ngspice/libngspice is not installed")
        return
    if mode == "if_available" and _ngspice_available():
        return
    skip = pytest.mark.skip(reason=f"ngspice tests off (--ngspice={mode})")
    for item in items:
        if "ngspice" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_engine():
    """The process's in-process ngspice engine."""
    from spicebridge.engines import SharedEngine

    return SharedEngine()


@pytest.fixture(scope="session")
def batch_engine():
    """The ``ngspice -b`` engine."""
    from spicebridge.engines import BatchEngine

    return BatchEngine()
