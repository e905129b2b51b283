"""The two oracles (dense naive, token-loop recurrent) agree, have exact gradients, and validate input."""

import pytest
import torch

from sessa.ops import feedback_solve
from sessa.ops.feedback.naive import feedback_weights
from sessa.utils.checks import debug_checks


def inputs(B=2, T=9, H=2, dk=4, dv=3, dtype=torch.float64, gamma_max=0.999, requires_grad=False):
    q = torch.randn(B, T, H, dk, dtype=dtype)
    k = torch.randn(B, T, H, dk, dtype=dtype)
    f = torch.randn(B, T, H, dv, dtype=dtype)
    gamma = gamma_max * torch.tanh(torch.randn(B, T, H, dtype=dtype) * 2)
    if requires_grad:
        for x in (q, k, f, gamma):
            x.requires_grad_(True)
    return q, k, f, gamma


def test_solution_satisfies_the_defining_equation():
    q, k, f, gamma = inputs(T=17)
    s = feedback_solve(q, k, f, gamma, impl="naive")
    alpha = feedback_weights(q, k, scale=0.5)  # [B, H, T, T], dk = 4
    rhs = f + gamma[..., None] * torch.einsum("bhts,bshd->bthd", alpha, s)
    assert torch.allclose(s, rhs, atol=1e-12)
    assert torch.equal(s[:, 0], f[:, 0])  # row t = 0 reads nothing
    rows = alpha.sum(-1)
    assert torch.allclose(rows[..., 1:], torch.ones_like(rows[..., 1:])) and rows[..., 0].abs().max() == 0


@pytest.mark.parametrize("T", [1, 2, 5, 33])
def test_naive_equals_recurrent_values_and_gradients(T):
    q, k, f, gamma = inputs(T=T, requires_grad=True)
    g = torch.randn(2, T, 2, 3, dtype=torch.float64)
    outs, grads = [], []
    for impl in ("naive", "recurrent"):
        s = feedback_solve(q, k, f, gamma, impl=impl)
        outs.append(s)
        grads.append(torch.autograd.grad((s * g).sum(), (q, k, f, gamma), allow_unused=True, materialize_grads=True))
    assert torch.allclose(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("impl", ["naive", "recurrent"])
def test_gradcheck(impl):
    q, k, f, gamma = inputs(B=1, T=5, H=1, dk=3, dv=2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: feedback_solve(*a, impl=impl), (q, k, f, gamma))


@pytest.mark.parametrize("impl", ["naive", "recurrent"])
def test_initial_state_equals_one_long_solve(impl):
    q, k, f, gamma = inputs(T=12)
    full = feedback_solve(q, k, f, gamma, impl="naive")
    s1, state = feedback_solve(q[:, :7], k[:, :7], f[:, :7], gamma[:, :7], impl=impl, output_final_state=True)
    s2, state2 = feedback_solve(
        q[:, 7:], k[:, 7:], f[:, 7:], gamma[:, 7:], impl=impl, initial_state=state, output_final_state=True
    )
    assert torch.allclose(torch.cat([s1, s2], 1), full, atol=1e-12)
    assert state2[0].shape == (2, 12, 2, 4) and torch.allclose(state2[1], full, atol=1e-12)


@pytest.mark.parametrize("impl", ["naive", "recurrent"])
def test_left_padding_mask_equals_unpadded(impl):
    q, k, f, gamma = inputs(B=1, T=6)
    pad = 3
    qp, kp, fp, gp = (torch.cat([torch.randn(1, pad, *x.shape[2:], dtype=x.dtype), x], 1) for x in (q, k, f, gamma))
    mask = torch.tensor([[0] * pad + [1] * 6])
    s_pad = feedback_solve(qp, kp, fp, gp, impl=impl, attention_mask=mask)
    s = feedback_solve(q, k, f, gamma, impl=impl)
    assert torch.allclose(s_pad[:, pad:], s, atol=1e-12)
    assert torch.equal(s_pad[:, :pad], fp[:, :pad])  # padded rows read nothing
    assert torch.isfinite(s_pad).all()


def test_cu_seqlens_equals_separate_runs():
    q, k, f, gamma = inputs(B=1, T=10, requires_grad=True)
    cu = torch.tensor([0, 3, 3, 10])
    s = feedback_solve(q, k, f, gamma, cu_seqlens=cu, impl="naive")
    a = feedback_solve(q[:, :3], k[:, :3], f[:, :3], gamma[:, :3], impl="naive")
    b = feedback_solve(q[:, 3:], k[:, 3:], f[:, 3:], gamma[:, 3:], impl="naive")
    assert torch.allclose(s, torch.cat([a, b], 1), atol=1e-12)


def test_low_precision_inputs_accumulate_in_float32():
    q, k, f, gamma = inputs(T=40, dtype=torch.float32)
    ref = feedback_solve(q, k, f, gamma, impl="naive")
    s = feedback_solve(*(x.bfloat16() for x in (q, k, f, gamma)), impl="naive")
    assert s.dtype == torch.bfloat16
    rel_rms = ((s.float() - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()
    assert rel_rms < 3e-2  # bf16 inputs carry ~3 significant digits


def test_bounded_by_one_over_one_minus_gamma_max():
    q, k, f, _ = inputs(T=200, H=1)
    gamma = torch.full(f.shape[:3], 0.999, dtype=torch.float64)
    s = feedback_solve(torch.zeros_like(q), k, torch.ones_like(f), gamma, impl="naive")
    assert s.abs().max() <= 1.0 / (1 - 0.999) + 1e-9


def test_empty_sequence():
    q, k, f, gamma = inputs(T=0)
    assert feedback_solve(q, k, f, gamma).shape == (2, 0, 2, 3)


@pytest.mark.parametrize(
    "change,exc,match",
    [
        (dict(q=torch.randn(2, 9, 2)), ValueError, "q must have 4 dimensions"),
        (dict(k=torch.randn(2, 9, 2, 5)), ValueError, "k must have the shape of q"),
        (dict(f=torch.randn(2, 8, 2, 3)), ValueError, "f must be"),
        (dict(gamma=torch.randn(2, 9, 1)), ValueError, "gamma must be"),
        (dict(q=torch.ones(2, 9, 2, 4, dtype=torch.long)), TypeError, "floating-point"),
        (dict(scale=-1.0), ValueError, "scale"),
        (dict(impl="fast"), ValueError, "impl must be one of"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(initial_state=torch.zeros(1)), TypeError, "initial_state"),
        (dict(attention_mask=torch.ones(2, 5)), ValueError, "attention_mask"),
        (dict(cu_seqlens=torch.tensor([0, 9])), ValueError, "B = 1"),
    ],
)
def test_validation(change, exc, match):
    q, k, f, gamma = inputs()
    args = dict(q=q, k=k, f=f, gamma=gamma)
    kw = {n: change.pop(n) for n in list(change) if n not in args}
    args.update(change)
    with pytest.raises(exc, match=match):
        feedback_solve(args["q"], args["k"], args["f"], args["gamma"], **kw)


def test_cu_seqlens_validation():
    q, k, f, gamma = inputs(B=1, T=6)
    for bad, match in ((torch.tensor([0, 4]), "end at the packed length"), (torch.tensor([0, 5, 3, 6]), "non-decr")):
        with pytest.raises(ValueError, match=match):
            feedback_solve(q, k, f, gamma, cu_seqlens=bad)


def test_value_checks_run_in_debug_mode_only():
    """Shapes and dtypes are always checked; tensor values (NaN/Inf, |gamma| < 1, mask entries) only in
    debug mode, which names the first bad tensor; by default nothing is read back from the tensors."""
    q, k, f, gamma = inputs(B=1, T=5)
    past = (torch.randn(1, 2, 2, 4, dtype=torch.float64), torch.randn(1, 2, 2, 3, dtype=torch.float64))
    nan_q, nan_k = q.clone(), k.clone()
    nan_q[0, 3, 1, 2] = nan_k[0, 1, 0, 0] = float("nan")
    nan_past = (past[0], past[1].clone())
    nan_past[1][0, 1, 0, 0] = float("nan")
    cases = [
        (dict(q=nan_q, k=nan_k), r"^q must be finite but holds NaN/Inf; 1 entry breaks it, the first at index "
                                 r"\(0, 3, 1, 2\): nan"),
        (dict(gamma=torch.full_like(gamma, 50.0)), r"gamma must satisfy \|gamma\| < 1; 10 entries"),
        (dict(gamma=torch.full_like(gamma, -1.0)), r"gamma must satisfy \|gamma\| < 1"),
        (dict(initial_state=nan_past, attention_mask=torch.ones(1, 7, dtype=torch.long)),
         r"initial_state\[1\] \(s_past\) must be finite"),
        (dict(attention_mask=torch.tensor([[1, 1, 2, 1, 1]])), r"attention_mask must hold only 0 .* index \(0, 2\)"),
    ]
    for change, match in cases:
        args = {**dict(q=q, k=k, f=f, gamma=gamma), **change}
        with pytest.raises(ValueError, match=match), debug_checks():
            feedback_solve(**args)
        feedback_solve(**args)  # default: accepted unread (the caller's responsibility)
    # structural problems are refused in both modes
    for kw, exc, match in (
        (dict(attention_mask=torch.full((1, 5), 0.5)), TypeError, "attention_mask must be a bool or integer"),
        (dict(output_final_state="yes"), TypeError, "output_final_state must be a bool"),
        (dict(scale=float("inf")), ValueError, "scale must be a finite number > 0"),
        (dict(scale="1"), TypeError, "scale must be a finite number > 0"),
    ):
        with pytest.raises(exc, match=match):
            feedback_solve(q, k, f, gamma, **kw)
