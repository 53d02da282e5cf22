"""nnsim must import and run on a machine without PySpice, spicebridge or ngspice."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import sys
for name in ("PySpice", "spicebridge", "spicebridge.engines"):
    sys.modules[name] = None   # any import of them raises ImportError
import torch
torch.set_num_threads(1)
import nnsim, nnsim.analog, nnsim.convert, nnsim.data, nnsim.evaluate
import nnsim.hardware, nnsim.models, nnsim.synthetic
from nnsim.analog import ideal
from nnsim.convert import convert_to_analog
from nnsim.hardware import HardwareModel
from nnsim.models import VisionTransformer
torch.manual_seed(0)
m = VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16,
                      depth=1, num_heads=2, mlp_ratio=1.0).eval()
a = convert_to_analog(m, HardwareModel.ideal(), ideal())
x = torch.randn(2, 1, 8, 8)
with torch.no_grad():
    d = (a(x) - m(x)).abs().max().item()
assert d < 1e-5, d
bad = [k for k in sys.modules if k.split(".")[0] in ("PySpice", "spicebridge")
       and sys.modules[k] is not None]
assert not bad, bad
print("ok")
"""


def test_nnsim_imports_and_runs_without_pyspice_or_spicebridge():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("ok")
