"""Property test (hypothesis): random bad configurations and inputs only ever raise clear ValueError/TypeError.

Each example starts from a valid configuration/input and corrupts zero, one or two fields, so both the
rejection paths and the accepted paths are exercised. Deep errors (IndexError, RuntimeError from inside
torch, ...) or the silent acceptance of an invalid value fail the test. The calls run in debug mode, where
the value checks (token ids in range, NaN/Inf, |gamma| < 1) are on.
"""

import math

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sessa import SessaConfig, SessaLM
from sessa.ops import feedback_solve
from sessa.utils.checks import debug_checks

CLEAR = (ValueError, TypeError)
weird = st.sampled_from([None, "8", 8.5, True, -1, 0, [8], float("nan"), float("inf")])
ints = st.one_of(st.integers(-3, 12), weird)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), weird)
FIELDS = {
    "vocab_size": ints, "d_model": st.one_of(st.sampled_from([1, 2, 3, 4, 6, 12, 16]), weird),
    "n_layers": st.one_of(st.integers(-1, 2), weird), "n_heads": ints, "n_kv_heads": ints,
    "gamma_max": floats, "rope": st.one_of(st.booleans(), weird), "rope_theta": floats, "max_seq_len": ints,
    "ln_eps": floats, "feedback": st.one_of(st.booleans(), weird), "mixer": st.sampled_from(["lstm", 3, None]),
    "impl": st.sampled_from(["fast", None, "naive"]), "chunk_size": ints, "init_std": floats,
    "tie_embeddings": st.one_of(st.booleans(), weird),
}
corruptions = st.dictionaries(st.sampled_from(sorted(FIELDS)), st.none(), max_size=2).flatmap(
    lambda d: st.fixed_dictionaries({k: FIELDS[k] for k in d})
)


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@settings(max_examples=300, deadline=None)
@given(bad=corruptions, ids=st.lists(st.integers(-3, 20), min_size=0, max_size=10), rank=st.integers(0, 3))
def test_random_configs_and_token_ids(bad, ids, rank):
    try:
        cfg = SessaConfig(**{"vocab_size": 16, "d_model": 8, "n_layers": 1, "n_heads": 2, **bad})
        model = SessaLM(cfg)
    except CLEAR as e:
        event(f"config rejected: {type(e).__name__}")
        return
    event("config accepted")
    assert 0 < cfg.gamma_max < 1 and cfg.d_model % cfg.n_heads == 0
    assert _finite_positive(cfg.ln_eps) and _finite_positive(cfg.rope_theta) and _finite_positive(cfg.init_std)
    t = torch.tensor(ids, dtype=torch.long)
    t = [t[None], t, t[None, None], t.float()[None]][rank]
    try:
        with debug_checks():
            out = model(t)
    except CLEAR as e:
        event(f"input rejected: {type(e).__name__}")
        return
    event("forward ran")
    assert t.dim() == 2 and not t.is_floating_point()
    assert t.numel() == 0 or (t.min() >= 0 and t.max() < cfg.vocab_size)
    assert out.logits.shape == (*t.shape, cfg.vocab_size) and torch.isfinite(out.logits).all()


@st.composite
def solve_args(draw):
    B, T, H, dk, dv = (draw(st.integers(lo, 4)) for lo in (1, 0, 1, 1, 1))
    args = {
        "q": torch.randn(B, T, H, dk), "k": torch.randn(B, T, H, dk), "f": torch.randn(B, T, H, dv),
        "gamma": 0.9 * torch.tanh(torch.randn(B, T, H)),
    }
    kw = {"impl": draw(st.sampled_from(["auto", "naive", "recurrent"])), "chunk_size": draw(st.integers(1, 5))}
    what = draw(st.sampled_from(["none", "shape", "rank", "dtype", "scale", "impl", "chunk", "nan", "mask", "cu"]))
    name = draw(st.sampled_from(["q", "k", "f", "gamma"]))
    if what == "shape":
        shape = list(args[name].shape)
        shape[draw(st.integers(0, len(shape) - 1))] += draw(st.sampled_from([-1, 1, 2]))
        args[name] = torch.randn([max(s, 0) for s in shape])
    elif what == "rank":
        args[name] = args[name][..., 0] if draw(st.booleans()) else args[name][..., None]
    elif what == "dtype":
        args[name] = args[name].to(draw(st.sampled_from([torch.int64, torch.bool, torch.complex64])))
    elif what == "scale":
        kw["scale"] = draw(floats)
    elif what == "impl":
        kw["impl"] = draw(st.sampled_from(["dense", "", 1, None, "CHUNK"]))
    elif what == "chunk":
        kw["chunk_size"] = draw(ints)
    elif what == "nan" and args[name].numel():
        args[name].view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf")]))
    elif what == "mask":
        kw["attention_mask"] = torch.ones(B, max(T + draw(st.sampled_from([-1, 1, 0])), 0), dtype=torch.long)
    elif what == "cu":
        kw["cu_seqlens"] = torch.tensor(draw(st.lists(st.integers(-1, T + 1), min_size=0, max_size=4)))
    return args, kw, what


@settings(max_examples=300, deadline=None)
@given(spec=solve_args())
def test_random_feedback_solve_inputs(spec):
    args, kw, what = spec
    try:
        with debug_checks():
            s = feedback_solve(args["q"], args["k"], args["f"], args["gamma"], **kw)
    except CLEAR as e:
        event(f"rejected: {type(e).__name__}")
        return
    event(f"solve ran ({what})")
    assert s.shape == args["f"].shape and bool(torch.isfinite(s).all())
