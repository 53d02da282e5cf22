"""The raw-file reader on real ngspice output, and on broken files."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from spicebridge.errors import RawFileError
from spicebridge.rawfile import read_raw


def _ngspice_raw(tmp_path, deck: str) -> bytes:
    (tmp_path / "d.cir").write_text(deck)
    (tmp_path / ".spiceinit").write_text("set num_threads=1\n")
    subprocess.run(["ngspice", "-b", "-r", "o.raw", "d.cir"], cwd=tmp_path, check=True,
                   capture_output=True)
    return (tmp_path / "o.raw").read_bytes()


@pytest.mark.ngspice
def test_reads_real_and_complex_plots_of_one_file(tmp_path):
    buf = _ngspice_raw(tmp_path, "* t\nV1 in 0 DC 1 AC 1\nR1 in out 1k\nC1 out 0 1n\n.op\n"
                                 ".tran 10n 1u\n.ac lin 5 1k 1meg\n.end\n")
    plots = read_raw(buf)
    # the file holds the plots in ngspice's execution order (it runs .ac before .op/.tran)
    by_title = {p.title: p for p in plots}
    assert sorted(by_title) == ["AC Analysis", "Operating Point", "Transient Analysis"]
    op, tran, ac = (by_title[t] for t in ("Operating Point", "Transient Analysis", "AC Analysis"))
    assert op["v(out)"].dtype == np.float64 and op["v(out)"][0] == pytest.approx(1.0)
    assert tran.scale == "time" and tran["time"].size > 10
    assert ac["v(out)"].dtype == np.complex128
    np.testing.assert_allclose(ac["frequency"], np.linspace(1e3, 1e6, 5))
    h = ac["v(out)"]
    w = 2 * np.pi * ac["frequency"]
    np.testing.assert_allclose(h, 1 / (1 + 1j * w * 1e-6), rtol=1e-9)


@pytest.mark.ngspice
def test_truncated_file_is_refused(tmp_path):
    deck = "* t\nV1 in 0 DC 1\nR1 in out 1k\nC1 out 0 1n\n.tran 10n 1u\n.end\n"
    buf = _ngspice_raw(tmp_path, deck)
    with pytest.raises(RawFileError, match="truncated"):
        read_raw(buf[:-100])


def test_garbage_is_refused():
    with pytest.raises(RawFileError):
        read_raw(b"Title: x\nNo. Variables: 2\nNo. Points: 1\nVariables:\n")
    with pytest.raises(RawFileError, match="ASCII"):
        read_raw(b"Title: x\nNo. Variables: 1\nNo. Points: 1\nVariables:\n\t0\tt\ttime\nValues:\n")
