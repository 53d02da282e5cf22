"""Fixtures of the nnsim tests; the trained digits ViT and the synthetic lookup files are in
tests/conftest.py (the application's tests use them too)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_thread(torch_one_thread):
    """Every nnsim test runs torch with one thread (tests/conftest.py)."""
