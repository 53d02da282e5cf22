"""Fixtures of the nnsim tests (RAP's tests reuse them): a tiny trained digits ViT and small
lookup files written with the real writer."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One thread: with the other core busy, OpenMP spin-waits make tiny models 50x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_digits_model(tmp_path_factory):
    """(model, meta): the ``digits-tiny`` preset trained once per session (about 5 s on one
    core, about 94 % on the digits test split), checkpoint in a temporary cache."""
    from nnsim.models import load_or_train

    torch.set_num_threads(1)
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
