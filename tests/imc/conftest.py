"""Fixtures of the application's tests: one torch thread (see tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    """Every test here runs torch with one thread."""
