"""impl="triton" equals the dense oracle (values and all gradients) in every dtype and mode.

Without CUDA the kernels run on CPU tensors in Triton's interpreter (TRITON_INTERPRET=1, set here before
Triton is imported); with CUDA they are compiled and run on the GPU, where the CUDA-only tests below add
realistic sizes. The interpreter is slow, so the CPU shapes are small; they still cover T = 1, T not a
multiple of any block, widths that are not powers of two, several leaf blocks and workspace slices.
"""

import os
import subprocess
import sys

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:  # normally already set by tests/conftest.py, before anything imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="impl='triton' needs the optional triton package (pip install sessa[gpu])")

import sessa.ops.feedback as fb  # noqa: E402
import sessa.ops.feedback.triton_fwd as triton_fwd  # noqa: E402
import sessa.ops.feedback.triton_solve as triton_solve  # noqa: E402
from sessa.ops import feedback_solve  # noqa: E402
from sessa.ops.feedback.naive import naive_feedback_solve  # noqa: E402
from sessa.ops.feedback.triton_solve import triton_feedback_solve  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and type(triton_fwd.kern.lse_kernel).__name__ != "InterpretedFunction":
    pytest.skip("no CUDA, and Triton was imported before TRITON_INTERPRET=1 was set (tests/conftest.py sets it)",
                allow_module_level=True)

FP32_REL_RMS = 1e-5
BF16_REL_RMS = 2e-2  # as for the chunk path: bf16 rounding of inputs / outputs, amplified a little by the solve
FP16_REL_RMS = 2e-3  # fp16 inputs are computed in float32: only the fp16 output rounding (2^-11) remains


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (0 when both are exactly 0)."""
    a, b = a.double().cpu(), b.double().cpu()
    if b.abs().max() == 0:
        return float(a.abs().max())
    return ((a - b).norm() / b.norm()).item()


def make(B=2, T=9, H=2, dk=5, dv=3, dtype=torch.float32, gamma=None, n_past=0):
    """Leaves q, k, f, gamma [, k_past, s_past] on DEVICE; gamma = 0.999 tanh(2 z) unless a constant."""
    q, k = torch.randn(B, T, H, dk), torch.randn(B, T, H, dk)
    f = torch.randn(B, T, H, dv)
    g = 0.999 * torch.tanh(2 * torch.randn(B, T, H)) if gamma is None else torch.full((B, T, H), float(gamma))
    leaves = [q, k, f, g]
    if n_past:
        leaves += [torch.randn(B, n_past, H, dk), torch.randn(B, n_past, H, dv)]
    return [x.to(device=DEVICE, dtype=dtype).requires_grad_() for x in leaves]


def check(leaves, *, mask=None, cu=None, tol=FP32_REL_RMS, scale=None):
    """Triton solve and all its gradients vs the float64 oracle on the same (rounded) inputs."""
    q, k, f, g = leaves[:4]
    state = tuple(leaves[4:]) if len(leaves) > 4 else None
    up = torch.randn(f.shape, device=DEVICE)
    s = feedback_solve(q, k, f, g, impl="triton", scale=scale, initial_state=state, attention_mask=mask,
                       cu_seqlens=cu)
    grads = torch.autograd.grad(s, leaves, up.to(s.dtype))
    ref = [x.detach().cpu().double().requires_grad_() for x in leaves]
    ref_state = tuple(ref[4:]) if state is not None else None
    mask_c = None if mask is None else mask.cpu()
    cu_c = None if cu is None else cu.cpu()
    s64 = feedback_solve(*ref[:4], impl="naive", scale=scale, initial_state=ref_state, attention_mask=mask_c,
                         cu_seqlens=cu_c)
    g64 = torch.autograd.grad(s64, ref, up.cpu().double())
    assert s.dtype == f.dtype and s.shape == f.shape and s.device == f.device
    assert rel_rms(s, s64) <= tol, ("s", rel_rms(s, s64))
    names = ["q", "k", "f", "gamma", "k_past", "s_past"]
    for name, x, a, b in zip(names, leaves, grads, g64, strict=False):
        assert a.dtype == x.dtype and a.shape == x.shape
        assert rel_rms(a, b) <= tol, (name, rel_rms(a, b))
    return s


@pytest.mark.parametrize(("T", "dk", "dv"), [(1, 5, 3), (9, 5, 3), (70, 24, 40)])
def test_float32_values_and_all_gradients(T, dk, dv):
    check(make(T=T, dk=dk, dv=dv))


@pytest.mark.parametrize("gamma", [0.999, -0.999, 1e-7])
def test_float32_gamma_at_the_limits(gamma):
    """gamma = +-gamma_max (condition number ~1000) and gamma ~ 0 (d gamma must come from o, not s - f)."""
    check(make(T=40, dk=20, dv=12, gamma=gamma))


def test_float32_initial_state_and_left_padding():
    leaves = make(T=37, dk=12, dv=20, n_past=5)
    mask = torch.ones(2, 42, dtype=torch.long)
    mask[0, :3] = 0  # padding inside the past
    mask[1, :8] = 0  # the whole past and the first three new tokens
    s = check(leaves, mask=mask.to(DEVICE))
    assert torch.equal(s[1, :3], leaves[2][1, :3])  # padded rows read nothing: s = f


def test_float32_packed_sequences_do_not_read_across():
    cu = torch.tensor([0, 11, 11, 50, 70], device=DEVICE)  # includes an empty sequence
    check(make(B=1, T=70, dk=7, dv=33), cu=cu)


def test_several_leaves_and_workspace_slices(monkeypatch):
    """Small leaves and a tiny workspace: a deep halving recursion, row-sliced rectangles, past + padding."""
    monkeypatch.setattr(triton_fwd, "LEAF", 16)
    monkeypatch.setattr(triton_fwd, "WORKSPACE_ELEMENTS", 64 * 8)
    leaves = make(B=1, T=50, dk=9, dv=17, n_past=7)
    mask = torch.ones(1, 57, dtype=torch.long)
    mask[0, :4] = 0
    check(leaves, mask=mask.to(DEVICE), scale=0.3)


def test_bf16_within_stated_tolerance():
    leaves = make(T=70, dk=24, dv=40, dtype=torch.bfloat16)
    check(leaves, tol=BF16_REL_RMS)


@pytest.mark.slow
def test_bf16_extreme_gamma_past_and_many_leaves(monkeypatch):
    monkeypatch.setattr(triton_fwd, "LEAF", 16)
    for gamma in (0.999, -0.999):
        leaves = make(T=90, dk=20, dv=36, dtype=torch.bfloat16, gamma=gamma, n_past=6)
        check(leaves, tol=BF16_REL_RMS)


def test_fp16_is_computed_in_float32():
    check(make(T=30, dk=8, dv=8, dtype=torch.float16), tol=FP16_REL_RMS)


@pytest.mark.slow
@pytest.mark.parametrize(("T", "dk", "dv"), [(129, 48, 80), (200, 100, 36)])
def test_float32_larger_shapes(T, dk, dv):
    check(make(T=T, dk=dk, dv=dv, n_past=3))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, FP32_REL_RMS), (torch.bfloat16, BF16_REL_RMS)])
@pytest.mark.parametrize("padded", [False, True])
def test_decode_step_matches_oracle(dtype, tol, padded):
    """One token against a cache held as strided views of larger buffers (as the layer cache stores it)."""
    B, n, H, dk, dv = 2, 600, 2, 24, 40  # 600 keys: two key splits of the weighted sum
    big_k = torch.randn(B, n + 50, H, dk, device=DEVICE).to(dtype)
    big_s = torch.randn(B, n + 50, H, dv, device=DEVICE).to(dtype)
    k_past, s_past = big_k[:, :n], big_s[:, :n]
    q, k = torch.randn(B, 1, H, dk, device=DEVICE).to(dtype), torch.randn(B, 1, H, dk, device=DEVICE).to(dtype)
    f, g = torch.randn(B, 1, H, dv, device=DEVICE).to(dtype), torch.full((B, 1, H), 0.9, device=DEVICE).to(dtype)
    mask = None
    if padded:
        mask = torch.ones(B, n + 1, dtype=torch.long, device=DEVICE)
        mask[0, :17] = 0  # left padding of the past
        mask[1, :] = 0  # a padded row: reads nothing, s = f
        mask[1, n] = 0
    with torch.no_grad():
        s = feedback_solve(q, k, f, g, impl="triton", initial_state=(k_past, s_past), attention_mask=mask)
    ref = feedback_solve(*(x.double().cpu() for x in (q, k, f, g)), impl="recurrent",
                         initial_state=(k_past.double().cpu(), s_past.double().cpu()),
                         attention_mask=None if mask is None else mask.cpu())
    assert s.dtype == dtype and s.shape == (B, 1, H, dv)
    assert rel_rms(s, ref) <= tol
    if padded:
        assert torch.equal(s[1], f[1])


def test_sessa_layer_with_triton_matches_chunk():
    """The layer's own call (non-contiguous q_b / k_b / f views, one head of width D): output and all
    parameter gradients equal those of impl="chunk"."""
    from sessa.layers.sessa import SessaLayer

    grads = {}
    for impl in ("chunk", "triton"):
        torch.manual_seed(1)
        layer = SessaLayer(48, 4, impl=impl).to(DEVICE)
        x = torch.randn(2, 21, 48, device=DEVICE, requires_grad=True)
        y = layer(x)
        y.square().sum().backward()
        grads[impl] = [y.detach(), x.grad] + [p.grad for p in layer.parameters()]
    for a, b in zip(grads["triton"], grads["chunk"], strict=True):
        assert rel_rms(a, b) <= FP32_REL_RMS


def test_output_final_state_and_chunked_prefill_match_one_call():
    """Continuing a cache in two pieces gives the one-call solution (values only; gradients above)."""
    q, k, f, g = (x.detach() for x in make(B=1, T=40, dk=8, dv=8))
    s_all = feedback_solve(q, k, f, g, impl="triton")
    s1, state = feedback_solve(q[:, :25], k[:, :25], f[:, :25], g[:, :25], impl="triton", output_final_state=True)
    s2 = feedback_solve(q[:, 25:], k[:, 25:], f[:, 25:], g[:, 25:], impl="triton", initial_state=state)
    assert rel_rms(torch.cat([s1, s2], 1), s_all) <= FP32_REL_RMS


def test_auto_selects_triton_only_on_cuda(monkeypatch):
    calls = []
    real = fb.GPU_IMPLS["triton"]
    monkeypatch.setitem(fb.GPU_IMPLS, "triton", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, f, g = make(T=12)
    feedback_solve(q, k, f, g)
    assert calls == ([1] if CUDA else [])
    feedback_solve(*(x.double() for x in (q, k, f, g)))  # float64 keeps the float64 chunk path
    assert len(calls) == (1 if CUDA else 0)


def test_clear_errors_when_triton_cannot_run(monkeypatch):
    q, k, f, g = (x.detach().cpu() for x in make(T=4))
    monkeypatch.setattr(triton_solve, "interpreter_enabled", lambda: False)
    with pytest.raises(ValueError, match="CUDA tensors"):
        triton_feedback_solve(q, k, f, g, scale=1.0)
    monkeypatch.setattr(triton_solve, "triton_available", lambda: False)
    with pytest.raises(ImportError, match=r"sessa\[gpu\]"):
        feedback_solve(q, k, f, g, impl="triton")


def test_sessa_ops_imports_without_triton():
    """`sessa.ops` loads no Triton kernels by itself, and impl="triton" without Triton is a clear ImportError."""
    code = (
        "import sys\n"
        "import torch\n"
        "from sessa.ops import feedback_solve\n"
        "q = torch.randn(1, 5, 1, 4)\n"
        "assert torch.equal(feedback_solve(q, q, q, torch.zeros(1, 5, 1)), q)\n"
        "assert 'sessa.ops.feedback.triton_kernels' not in sys.modules, 'kernels imported eagerly'\n"
        "sys.modules['triton'] = None\n"  # `import triton` now fails, as without the package
        "try:\n"
        "    feedback_solve(q, q, q, torch.zeros(1, 5, 1), impl='triton')\n"
        "except ImportError as e:\n"
        "    assert 'sessa[gpu]' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('impl=triton without triton must raise ImportError')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TRITON_INTERPRET", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU: compiled kernels at realistic sizes")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_realistic_width_against_chunk(dtype):
    """One Sessa feedback head (width D = 1024) at T = 2048 vs the float32 chunk path on the same inputs."""
    T, D = 2048, 1024
    leaves = [x.detach().to(dtype).requires_grad_() for x in make(B=1, T=T, H=1, dk=D, dv=D, n_past=100)]
    up = torch.randn(1, T, 1, D, device=DEVICE)
    s = triton_feedback_solve(*leaves[:4], scale=D**-0.5, initial_state=tuple(leaves[4:]))
    grads = torch.autograd.grad(s, leaves, up.to(dtype))
    ref = [x.detach().float().requires_grad_() for x in leaves]
    s32 = fb.IMPLS["chunk"](*ref[:4], scale=D**-0.5, chunk_size=256, initial_state=tuple(ref[4:]))
    g32 = torch.autograd.grad(s32, ref, up)
    tol = FP32_REL_RMS * 10 if dtype == torch.float32 else BF16_REL_RMS
    assert rel_rms(s, s32) <= tol
    for a, b in zip(grads, g32, strict=True):
        assert rel_rms(a, b) <= tol


def test_naive_oracle_is_the_reference():
    """Guard: the oracle used above is the dense float64 solve (a tiny hand-checked case)."""
    q = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    f = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)
    g = torch.full((1, 3, 1), 0.5, dtype=torch.float64)
    s = naive_feedback_solve(q, q, f, g, scale=1.0)
    # uniform weights: s0 = 1, s1 = 2 + 0.5 * 1, s2 = 3 + 0.5 * (1 + 2.5) / 2
    assert torch.allclose(s.flatten(), torch.tensor([1.0, 2.5, 3.875], dtype=torch.float64))
