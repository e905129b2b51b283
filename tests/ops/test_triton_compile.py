"""Every Triton kernel variant compiles for an H100 (sm_90) down to a cubin, on any machine.

The interpreter (tests/ops/test_triton.py) checks the numerics on CPU but not what only the compiler
rejects (non-constexpr globals, unsupported constructs, dtype mixes in tl.dot). Triton's wheel ships the
CUDA backend and ptxas, so compiling needs no GPU; it runs in a fresh process without TRITON_INTERPRET.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="needs the optional triton package (pip install sessa[gpu])")

SCRIPT = r"""
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from sessa.ops.feedback import triton_kernels as K

assert type(K.lse_kernel).__name__ == "JITFunction"
target = GPUTarget("cuda", 90, 32)


def build(fn, types, consts, num_warps=8):  # 8 warps as launched (the GEMM and decoding kernels: 4)
    sig = {a: "constexpr" if a in consts else types.get(a, "i32") for a in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs=consts)
    triton.compile(src, target=target, options={"num_warps": num_warps})
    print("compiled", fn.__name__, sorted((k, str(v)) for k, v in consts.items()), flush=True)


for DT, name, BK, prec in ((tl.bfloat16, "bf16", 64, "tf32"), (tl.float32, "fp32", 32, "ieee")):
    base = {"Q": f"*{name}", "K": f"*{name}", "LO": "*i32", "KOK": "*i8", "LSE": "*fp32", "scale": "fp32"}
    build(K.lse_kernel, base, {"HAS_KMASK": True, "BM": 64, "BN": 64, "BK": BK, "DT": DT, "INTERP": False})
    tile = dict(base, W="*fp32", V="*fp32", O="*fp32", OUT_A="*fp32", OUT_DS=f"*{name}")
    for diag, ds in ((False, False), (True, False), (False, True), (True, True)):
        build(K.tile_kernel, tile, {"HAS_KMASK": not diag, "DIAG": diag, "WITH_DS": ds, "BM": 64, "BN": 64,
                                    "BK": BK, "DT": DT, "PREC": prec, "INTERP": False})
    for xy, dt in ((name, DT), ("fp32", tl.float32)):
        build(K.gemm_acc_kernel, {"X": f"*{xy}", "Y": f"*{xy}", "Cm": "*fp32"},
              {"BM": 64, "BN": 64, "BK": BK, "DT": dt, "PREC": prec, "INTERP": False}, num_warps=4)
ptrs = {n: "*fp32" for n in ("X", "A", "F", "G", "O", "V", "Gd", "ACC", "U", "W")}
for C in (16, 64):
    build(K.leaf_fwd_kernel, ptrs, {"C": C, "BV": 16, "INTERP": False})
    build(K.leaf_bwd_kernel, ptrs, {"C": C, "BV": 16, "INTERP": False})
from sessa.ops.feedback import triton_decode as Dk

dec = {"Q": "*fp32", "K": "*bf16", "OUT": "*fp32", "scale": "fp32"}
build(Dk.logits_kernel, dec, {"BN": 64, "BK": 128}, num_warps=4)
build(Dk.weighted_sum_kernel, {"Wt": "*fp32", "S": "*bf16", "OUT": "*fp32"}, {"BN": 32, "BV": 64}, num_warps=4)
print("all compiled")
"""


@pytest.mark.slow
def test_all_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # silence Triton 3.9's notice; fusion on, as by default
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("compiled") == 21 and "all compiled" in r.stdout
