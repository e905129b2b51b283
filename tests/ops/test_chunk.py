"""The chunked feedback solve equals the dense oracle (values and all gradients), in every dtype and mode."""

import pytest
import torch

import sessa.ops.feedback.chunk_fwd as chunk_fwd
from sessa.ops import feedback_solve
from sessa.ops.feedback.chunk import chunk_feedback_solve
from sessa.ops.feedback.naive import naive_feedback_solve

BF16_REL_RMS = 2e-2  # bf16 output rounding is 2^-9 relative; the solve amplifies input rounding a little


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def make(B=2, T=9, H=2, dk=5, dv=3, dtype=torch.float64, gamma=None, n_past=0, grad=True):
    """Random q, k, f, gamma [and initial_state]; gamma = 0.999 tanh(2 z) unless given as a constant."""
    q, k = torch.randn(B, T, H, dk, dtype=dtype), torch.randn(B, T, H, dk, dtype=dtype)
    f = torch.randn(B, T, H, dv, dtype=dtype)
    g = 0.999 * torch.tanh(2 * torch.randn(B, T, H, dtype=dtype)) if gamma is None else gamma(B, T, H, dtype)
    leaves = [q, k, f, g]
    state = None
    if n_past:
        state = (torch.randn(B, n_past, H, dk, dtype=dtype), torch.randn(B, n_past, H, dv, dtype=dtype))
        leaves += list(state)
    for x in leaves:
        x.requires_grad_(grad)
    return q, k, f, g, state, leaves


def both(q, k, f, g, state, leaves, chunk_size, mask=None, up=None):
    """(s, grads) of the naive oracle and of the chunk path for the cotangent `up`."""
    out = []
    scale = q.shape[-1] ** -0.5
    for fn, kw in ((naive_feedback_solve, {}), (chunk_feedback_solve, {"chunk_size": chunk_size})):
        s = fn(q, k, f, g, scale=scale, initial_state=state, attention_mask=mask, **kw)
        up = torch.randn_like(s) if up is None else up
        out.append((s, torch.autograd.grad(s, leaves, up)))
    return out


def assert_close64(ref, got, tol=1e-9):
    (s0, g0), (s1, g1) = ref, got
    assert (s0 - s1).abs().max().item() <= tol
    for a, b in zip(g0, g1, strict=True):
        assert (a - b).abs().max().item() <= tol * max(1.0, a.abs().max().item())


@pytest.mark.parametrize("T", [1, 2, 63, 64, 65, 257])
@pytest.mark.parametrize("chunk_size", [16, 64, 100])
def test_float64_values_and_all_gradients(T, chunk_size):
    q, k, f, g, state, leaves = make(T=T)
    assert_close64(*both(q, k, f, g, state, leaves, chunk_size))


@pytest.mark.parametrize(
    "gamma",
    [
        lambda B, T, H, dt: 1e-7 * torch.randn(B, T, H, dtype=dt),  # gamma ~ 0: o must still give d gamma
        lambda B, T, H, dt: torch.full((B, T, H), 0.999, dtype=dt),  # +gamma_max: condition number ~1000
        lambda B, T, H, dt: torch.full((B, T, H), -0.999, dtype=dt),  # -gamma_max
    ],
    ids=["near0", "plus_max", "minus_max"],
)
def test_float64_extreme_gamma(gamma):
    q, k, f, g, state, leaves = make(T=65, gamma=gamma)
    assert_close64(*both(q, k, f, g, state, leaves, chunk_size=16))


@pytest.mark.parametrize("n_past", [1, 20])
def test_float64_initial_state_and_left_padding(n_past):
    q, k, f, g, state, leaves = make(T=37, n_past=n_past)
    mask = torch.ones(2, n_past + 37, dtype=torch.long)
    mask[0, :5] = 0  # left padding that covers the past and the first new token
    mask[1, : n_past + 3] = 0
    ref, got = both(q, k, f, g, state, leaves, chunk_size=8, mask=mask)
    assert_close64(ref, got)  # includes the gradients w.r.t. k_past and s_past


def test_left_padding_without_past_rows_read_nothing():
    q, k, f, g, state, leaves = make(T=20)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[0, :7] = 0
    ref, got = both(q, k, f, g, state, leaves, chunk_size=4, mask=mask)
    assert_close64(ref, got)
    assert torch.equal(got[0][0, :8], f[0, :8])  # padded rows and the first real row: s = f


def test_many_key_tiles_merge_exactly(monkeypatch):
    """A tiny tile budget forces the multi-tile log-sum-exp merge (used at long T) in both passes."""
    monkeypatch.setattr(chunk_fwd, "TILE_ELEMENTS", 40)
    q, k, f, g, state, leaves = make(T=70, n_past=13)
    mask = torch.ones(2, 83, dtype=torch.long)
    mask[1, :9] = 0
    assert_close64(*both(q, k, f, g, state, leaves, chunk_size=5, mask=mask))


GAMMAS = {
    "random": None,
    "near0": lambda B, T, H, dt: 1e-7 * torch.randn(B, T, H, dtype=dt),
    "plus_max": lambda B, T, H, dt: torch.full((B, T, H), 0.999, dtype=dt),
    "minus_max": lambda B, T, H, dt: torch.full((B, T, H), -0.999, dtype=dt),
}


@pytest.mark.parametrize("T", [1, 2, 63, 64, 65, 257])
@pytest.mark.parametrize("gamma", list(GAMMAS))
def test_float32_relative_rms_against_float64_oracle(T, gamma):
    n_past = 5 if T == 65 else 0  # one size also reads a past and has left padding
    q, k, f, g, state, leaves = make(T=T, dtype=torch.float32, gamma=GAMMAS[gamma], n_past=n_past)
    mask = None
    if n_past:
        mask = torch.ones(2, n_past + T, dtype=torch.long)
        mask[1, :9] = 0
    leaves64 = [x.detach().double().requires_grad_() for x in leaves]
    state64 = tuple(leaves64[4:]) if n_past else None
    up = torch.randn(2, T, 2, 3)
    s32 = chunk_feedback_solve(q, k, f, g, scale=5**-0.5, chunk_size=64, initial_state=state, attention_mask=mask)
    g32 = torch.autograd.grad(s32, leaves, up)
    s64 = naive_feedback_solve(*leaves64[:4], scale=5**-0.5, initial_state=state64, attention_mask=mask)
    g64 = torch.autograd.grad(s64, leaves64, up.double())
    assert s32.dtype == torch.float32 and rel_rms(s32, s64) <= 1e-5
    for a, b in zip(g32, g64, strict=True):
        assert a.dtype == torch.float32
        if b.abs().max() == 0:  # e.g. dq, dk, d gamma at T = 1: nothing is read, the gradient is exactly 0
            assert a.abs().max() == 0
        else:
            assert rel_rms(a, b) <= 1e-5


def test_gradcheck_float64_tiny():
    q, k, f, g, state, leaves = make(B=1, T=6, H=2, dk=3, dv=2, n_past=2)
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1]])

    def fn(q, k, f, g, kp, sp):
        return chunk_feedback_solve(q, k, f, g, scale=0.7, chunk_size=4, initial_state=(kp, sp), attention_mask=mask)

    assert torch.autograd.gradcheck(fn, tuple(leaves))


def test_bf16_inputs_within_stated_tolerance_of_float32():
    q, k, f, g, state, leaves = make(T=100, dtype=torch.bfloat16)
    s = chunk_feedback_solve(q, k, f, g, scale=5**-0.5, chunk_size=32)
    grads = torch.autograd.grad(s.float().sum(), leaves)
    leaves32 = [x.detach().float().requires_grad_() for x in leaves]  # the same (bf16-exact) inputs
    s32 = chunk_feedback_solve(*leaves32, scale=5**-0.5, chunk_size=32)
    grads32 = torch.autograd.grad(s32.sum(), leaves32)
    assert s.dtype == torch.bfloat16 and rel_rms(s, s32) <= BF16_REL_RMS
    for a, b in zip(grads, grads32, strict=True):
        assert a.dtype == torch.bfloat16 and rel_rms(a, b) <= BF16_REL_RMS


def test_output_is_not_a_view_of_saved_state():
    q, k, f, g, state, leaves = make(T=10, H=1)
    expected = torch.autograd.grad(chunk_feedback_solve(q, k, f, g, scale=0.5, chunk_size=4).sum(), leaves)
    s = chunk_feedback_solve(q, k, f, g, scale=0.5, chunk_size=4)
    s.add_(3.0)  # an in-place edit by the caller must not reach the s the backward reads
    for a, b in zip(torch.autograd.grad(s.sum(), leaves), expected, strict=True):
        assert torch.equal(a, b)


def test_dispatcher_auto_picks_chunk_and_matches_naive(monkeypatch):
    q, k, f, g, _, leaves = make(T=30)
    calls = []
    import sessa.ops.feedback as fb

    real = fb.IMPLS["chunk"]
    monkeypatch.setitem(fb.IMPLS, "chunk", lambda *a, **kw: calls.append(kw["chunk_size"]) or real(*a, **kw))
    s = feedback_solve(q, k, f, g, impl="auto", chunk_size=8)
    assert calls == [8]
    assert torch.allclose(s, feedback_solve(q, k, f, g, impl="naive"), atol=1e-12)
    cu = torch.tensor([0, 11, 30])  # packed sequences: no reads across the boundary
    sp = feedback_solve(q[:1], k[:1], f[:1], g[:1], impl="chunk", chunk_size=4, cu_seqlens=cu)
    sn = feedback_solve(q[:1], k[:1], f[:1], g[:1], impl="naive", cu_seqlens=cu)
    assert torch.allclose(sp, sn, atol=1e-12)


def test_bad_arguments_are_rejected():
    q, k, f, g, _, _ = make(T=4, grad=False)
    # checked once, by the dispatcher: the chunked solve itself trusts its arguments
    with pytest.raises(ValueError, match="chunk_size"):
        feedback_solve(q, k, f, g, impl="chunk", chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        feedback_solve(q, k, f, g, impl="chunk", chunk_size=True)
    with pytest.raises(ValueError, match="scale"):
        feedback_solve(q, k, f, g, impl="chunk", scale=-1.0, chunk_size=2)
    with pytest.raises(ValueError, match="gamma"):  # tensors are validated once, by the dispatcher
        feedback_solve(q, k, f, g[:, :3], impl="chunk", chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        feedback_solve(q, k, f, g, impl="chunk", chunk_size=-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_masking_is_exact_for_a_huge_scale(monkeypatch, dtype):
    """scale = 1e30: logits of size 1e30 overtake any finite mask sentinel; the chunked solve masks with a
    true -inf, so it still equals the float64 oracle, with several key tiles and fully padded ones."""
    monkeypatch.setattr(chunk_fwd, "TILE_ELEMENTS", 40)
    q, k, f, g, state, leaves = make(T=40, n_past=7, dtype=dtype)
    mask = torch.ones(2, 47, dtype=torch.long)
    mask[0, :12] = 0  # covers the past and whole key tiles
    mask[1, :30] = 0
    leaves64 = [x.detach().double().requires_grad_() for x in leaves]
    s = chunk_feedback_solve(q, k, f, g, scale=1e30, chunk_size=8, initial_state=state, attention_mask=mask)
    ref = naive_feedback_solve(*leaves64[:4], scale=1e30, initial_state=tuple(leaves64[4:]), attention_mask=mask)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert rel_rms(s, ref) <= tol
    assert torch.equal(s[1, :24], f[1, :24])  # padded rows and the first real row read nothing: s = f
    # gradients w.r.t. f, gamma and s_past (those w.r.t. q, k are rounding noise times 1e30 at this scale)
    up = torch.randn(2, 40, 2, 3, dtype=torch.float64)
    got = torch.autograd.grad(s, [leaves[i] for i in (2, 3, 5)], up.to(dtype))
    want = torch.autograd.grad(ref, [leaves64[i] for i in (2, 3, 5)], up)
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all() and rel_rms(a, b) <= tol
    # the dispatcher's default path agrees too
    s_auto = feedback_solve(q, k, f, g, scale=1e30, chunk_size=8, initial_state=state, attention_mask=mask)
    assert torch.equal(s_auto, s)
