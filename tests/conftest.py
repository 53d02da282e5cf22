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


# nnsim fixtures, shared by tests/nnsim and tests/imc (the application's CLI and demo tests);
# torch is imported only by the tests that use them.
@pytest.fixture(scope="session")
def torch_one_thread():
    """One torch thread: with the other core busy, OpenMP spin-waits make tiny models 50x
    slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_digits_model(tmp_path_factory, torch_one_thread):
    """(model, meta): the ``digits-tiny`` preset trained once per session (about 5 s on one
    core, about 94 % on the digits test split), checkpoint in a temporary cache."""
    from nnsim.models import load_or_train

    cache = tmp_path_factory.mktemp("models")
    model, meta = load_or_train("digits-tiny", cache_dir=cache, seed=0)
    assert meta["test_accuracy"] > 0.8, meta
    return model, meta


@pytest.fixture(scope="session")
def synthetic_lookups(tmp_path_factory):
    """(crossbar.h5, adc.h5): parametric stand-ins in the real lookup format
    (``nnsim.synthetic``), PVT grid tt/ss/ff x 1.62/1.8/1.98 V x -40/27/85 degC, ADC 4/6/8 bits.
    """
    from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

    d = tmp_path_factory.mktemp("lookup")
    return (write_synthetic_crossbar(d / "crossbar.h5", seed=1),
            write_synthetic_adc(d / "adc.h5", seed=2))


@pytest.fixture(scope="session")
def hw_tt(synthetic_lookups):
    """HardwareModel at tt, 1.8 V, 27 degC, 6-bit ADC from the synthetic files."""
    from nnsim.hardware import HardwareModel

    return HardwareModel.from_lookup(synthetic_lookups, process="tt", vdd_v=1.8, temp_c=27.0,
                                     adc_bits=6)
