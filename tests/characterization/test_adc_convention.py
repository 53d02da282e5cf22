"""The ADC threshold convention: one attribute, one reader."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.adc.convention import ATTR, IDEAL_THRESHOLD_K_MINUS, ideal_threshold_k_minus


def test_the_attribute_decides_even_against_the_data():
    k = np.arange(1, 64, dtype=float)[None]
    # 8-bit-like offsets of several LSB must not flip the convention the file states
    assert ideal_threshold_k_minus({ATTR: 0.0}, k - 0.5 + 3.0) == 0.0
    assert ideal_threshold_k_minus({ATTR: 0.5}, k) == 0.5
    assert IDEAL_THRESHOLD_K_MINUS == 0.0  # the SAR characterized here is a floor quantizer


def test_bad_or_missing_attribute():
    with pytest.raises(ValueError, match=r"t\.h5: adc/thresholds: attribute .* 0\.25"):
        ideal_threshold_k_minus({ATTR: 0.25}, source="t.h5: adc/thresholds")
    with pytest.raises(ValueError, match="no ideal_threshold_k_minus"):
        ideal_threshold_k_minus({}, source="t.h5")
    k = np.arange(1, 16, dtype=float)[None]
    with pytest.warns(UserWarning, match="judged from the data as k - 0.5"):
        assert ideal_threshold_k_minus({}, k - 0.5, source="old.h5") == 0.5
    with pytest.warns(UserWarning, match="as k - 0.0"):
        assert ideal_threshold_k_minus({}, k + 0.1, source="old.h5") == 0.0
