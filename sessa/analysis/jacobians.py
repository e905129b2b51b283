"""End-to-end Jacobians of real blocks and stacks, by VJP/JVP (never a dense T x T x D x D tensor).

    jacobian_norms      ||dy_t / dx_{t-l}||_F for one target t and every lag l: one backward per probe
    jacobian_norms_jvp  ||dy_{tau+l} / dx_tau||_F for one source tau and every lag: one forward-mode pass per probe
    transport_scores    u_tgt^T (dh_t^(N) / dh_tau^(0)) u_src through a depth-N stack: one backward

With probes="exact" the D basis vectors are used and the Frobenius norm is exact (D backwards); with an
int n, n Gaussian probes give the Hutchinson estimate E||u^T J||^2 = ||J||_F^2 (cheaper for large D).
`module` is a GatedBlock/SessaLayer (any mixer), a list/ModuleList of blocks, or a SessaLM (its blocks,
from the embeddings h^(0) to the last block's output h^(N), before the final norm).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from sessa.utils.checks import check_int, check_tensor

Probes = str | int
DENSE_LIMIT = 2**24  # entries of dense T x T solves per forward-mode pass (128 MB in float64)


def hidden_stack(module: nn.Module | Sequence[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function h^(0) [B, T, D] -> h^(N) [B, T, D] through the blocks of module."""
    decoder = getattr(module, "model", None)  # SessaLM and SessaForCausalLM: .model holds embed_tokens, layers
    if isinstance(module, nn.Module) and hasattr(decoder, "layers") and hasattr(decoder, "embed_tokens"):
        blocks = list(decoder.layers)  # a language model: its residual stream, without embed / norm / head
    elif isinstance(module, (nn.ModuleList, list, tuple)):
        blocks = list(module)
    elif isinstance(module, nn.Module):
        blocks = [module]
    else:
        raise TypeError(f"module must be an nn.Module, a list of blocks or a SessaLM, got {type(module).__name__}")
    if not blocks or not all(isinstance(b, nn.Module) for b in blocks):
        raise ValueError("module must contain at least one block (nn.Module)")

    def run(h: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            h = block(h)
            if isinstance(h, tuple):  # blocks may return (y, extra)
                h = h[0]
        return h

    return run


def embed_inputs(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """h^(0) = the LM's token embeddings of input_ids [B, T] (detached, ready to differentiate against)."""
    if not hasattr(getattr(model, "model", None), "embed_tokens"):
        raise TypeError(f"model must be a language model with .model.embed_tokens, got {type(model).__name__}")
    check_tensor("input_ids", input_ids, ndim=2, integer=True)
    with torch.no_grad():
        return model.model.embed_tokens(input_ids)


def _probe_vectors(probes: Probes, D: int, like: torch.Tensor, seed: int) -> tuple[torch.Tensor, float]:
    """Rows are probe vectors; the second value rescales the sum of squares to ||J||_F^2."""
    if probes == "exact":
        return torch.eye(D, dtype=like.dtype, device=like.device), 1.0
    check_int("probes (or 'exact')", probes, lo=1)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(probes, D, generator=g, dtype=torch.float64).to(like)
    return u, 1.0 / probes


def _check_x(x: object) -> torch.Tensor:
    x = check_tensor("x", x, ndim=3, floating=True)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must be a non-empty [B, T, D] tensor, got {tuple(x.shape)}")
    return x


def _position(name: str, value: int | None, T: int, default: int) -> int:
    return default if value is None else check_int(name, value, lo=0, hi=T - 1)


def jacobian_norms(
    module: nn.Module | Sequence[nn.Module],
    x: torch.Tensor,
    *,
    target: int | None = None,
    probes: Probes = "exact",
    seed: int = 0,
) -> torch.Tensor:
    """||dy_target / dx_{target - l}||_F for l = 0..target, per input: [B, target + 1] (lag on dim 1).

    x is the input of the stack, h^(0) [B, T, D]; inputs in the batch are independent, so one backward of
    sum_b <u, y_{b,target}> gives every input's row u^T J at once.
    """
    fn = hidden_stack(module)
    x = _check_x(x)
    B, T, D = x.shape
    target = _position("target", target, T, T - 1)
    u, norm = _probe_vectors(probes, D, x, seed)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        if y.shape[:2] != (B, T):
            raise ValueError(f"module must map [B, T, D] to [B, T, D'], got {tuple(y.shape)}")
        if u.shape[1] != y.shape[-1]:  # output width differs from input width: probe the output
            u, norm = _probe_vectors(probes, y.shape[-1], x, seed)
        sq = x.new_zeros(B, target + 1)
        y_t = y[:, target]
        for i in range(u.shape[0]):
            (g,) = torch.autograd.grad(y_t @ u[i], x, grad_outputs=torch.ones(B, dtype=x.dtype),
                                       retain_graph=i + 1 < u.shape[0])
            sq += g[:, : target + 1].pow(2).sum(-1).detach()
    return (sq * norm).sqrt().flip(1)


def jacobian_norms_jvp(
    module: nn.Module | Sequence[nn.Module],
    x: torch.Tensor,
    *,
    source: int = 0,
    probes: Probes = "exact",
    seed: int = 0,
    max_group: int = 16,
) -> torch.Tensor:
    """||dy_{source + l} / dx_source||_F for l = 0..T-1-source, per input: [B, T - source], by forward mode.

    Runs attention with SDPA's math kernel and Sessa's solve with its dense or token-loop implementation
    (same maths; dense while T^2 <= DENSE_LIMIT), because the fused CPU attention kernel and
    the chunked solve's autograd.Function have no forward-mode rule. Other modules whose ops lack
    forward-mode AD raise a RuntimeError from torch. max_group bounds the (probe, input) pairs per pass.
    """
    fn = hidden_stack(module)
    x = _check_x(x)
    B, T, D = x.shape
    source = _position("source", source, T, 0)
    check_int("max_group", max_group, lo=1)
    u, norm = _probe_vectors(probes, D, x, seed)
    x = x.detach()
    P = u.shape[0]
    # (probe, input) pairs go through in groups along the batch (inputs never interact across it), which
    # amortises per-step overhead. The dense solve is vectorised (fast) but holds group * T^2 entries, so
    # it is used while one pair fits in DENSE_LIMIT; otherwise the O(T * D)-memory token loop.
    group = max(1, min(max_group, DENSE_LIMIT // (T * T)))
    impl = "naive" if T * T <= DENSE_LIMIT else "recurrent"
    xs = x.repeat(P, 1, 1)  # row i * B + b: input b with probe i
    tangents = torch.zeros_like(xs)
    tangents[:, source] = u.repeat_interleave(B, dim=0)
    sq = []
    with sdpa_kernel([SDPBackend.MATH]), torch.no_grad(), _forward_mode_solves(module, impl), \
            warnings.catch_warnings():
        # torch's own forward-mode rules script a helper with torch.jit on first use and warn that
        # torch.jit is deprecated: nothing a user of this function can act on
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script. is deprecated", category=DeprecationWarning)
        for lo in range(0, P * B, group):
            _, dy = torch.func.jvp(fn, (xs[lo : lo + group],), (tangents[lo : lo + group],))
            sq.append(dy[:, source:].pow(2).sum(-1))
    total = torch.cat(sq).view(P, B, T - source).sum(0)
    return (total * norm).sqrt()


@contextlib.contextmanager
def _forward_mode_solves(module: nn.Module | Sequence[nn.Module], impl: str = "recurrent") -> Iterator[None]:
    """Temporarily switch Sessa mixers with impl auto/chunk/triton to `impl` (naive/recurrent support forward mode)."""
    roots = list(module) if isinstance(module, (list, tuple)) else [module]
    changed = [
        (m, m.impl)
        for root in roots
        for m in root.modules()
        if hasattr(m, "feedback_inputs") and getattr(m, "impl", None) in ("auto", "chunk", "triton")
    ]
    try:
        for m, _ in changed:
            m.impl = impl
        yield
    finally:
        for m, impl in changed:
            m.impl = impl


def transport_scores(
    module: nn.Module | Sequence[nn.Module],
    x: torch.Tensor,
    *,
    target: int | None = None,
    u_target: torch.Tensor | None = None,
    u_source: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """u_target^T (dh_target^(N) / dh_{target-l}^(0)) u_source for l = 0..target, per input: [B, target + 1].

    Probes default to seeded random unit vectors; pass your own [D] vectors for a chosen feature.
    """
    fn = hidden_stack(module)
    x = _check_x(x)
    B, T, D = x.shape
    target = _position("target", target, T, T - 1)
    g = torch.Generator().manual_seed(seed)
    probes = []
    for name, u in (("u_target", u_target), ("u_source", u_source)):
        if u is None:
            u = torch.randn(D, generator=g, dtype=torch.float64)
            u = u / u.norm()
        check_tensor(name, u, ndim=1, floating=True)
        if u.shape[0] != D:
            raise ValueError(f"{name} must have length D = {D}, got {u.shape[0]}")
        probes.append(u.to(x))
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        if y.shape != x.shape:
            raise ValueError(f"a transport score needs a width-preserving stack, got {tuple(y.shape)}")
        (grad,) = torch.autograd.grad(y[:, target] @ probes[0], x, grad_outputs=torch.ones(B, dtype=x.dtype))
    return (grad[:, : target + 1].detach() @ probes[1]).flip(1)
