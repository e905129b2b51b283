"""transformers' "install the optimized kernel" notes: dropped on CPU for the baselines' torch paths (other logs
pass), and on CUDA replaced by one note per mixer."""

import subprocess
import sys
import warnings

from sessa.layers.hf_kernels import note_cuda_fallback


def test_cpu_fallback_notes_of_both_transformers_baselines_are_dropped_other_logs_kept():
    code = (
        "import logging, torch\n"
        "from sessa.layers.gated_deltanet import GatedDeltaNetMixer\n"
        "from sessa.layers.mamba2 import Mamba2Mixer\n"
        "m = GatedDeltaNetMixer(8)\n"
        "_, c = m(torch.randn(1, 3, 8), use_cache=True)\n"
        "m(torch.randn(1, 1, 8), cache=c)\n"  # the conv-update and recurrent functions too
        "Mamba2Mixer(16)(torch.randn(1, 5, 16))\n"
        "logging.getLogger('transformers.integrations.hub_kernels').warning('another note')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "falling back" not in res.stderr and "another note" in res.stderr


def test_cuda_note_is_given_once_and_only_without_the_kernels():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        note_cuda_fallback("toy", "no_such_kernel_package_xyz", "toy-kernels")
        note_cuda_fallback("toy", "no_such_kernel_package_xyz", "toy-kernels")
        note_cuda_fallback("toy2", "torch", "torch")  # installed: nothing to say
    assert [str(w.message) for w in caught] == [
        "the toy mixer runs transformers' pure-PyTorch path on CUDA; `pip install toy-kernels` for its fused kernels"
    ]
