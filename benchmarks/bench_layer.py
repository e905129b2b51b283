"""Benchmark (b): SessaLayer vs the matched Transformer layer (same GatedBlock, causal-SDPA mixer).

    python benchmarks/bench_layer.py               # B = 1, D = 256, 4 heads, fp32, 2 threads, T = 512 ... 8192
    python benchmarks/bench_layer.py --max-t 16384
    python benchmarks/bench_layer.py --quick

Both layers have the same D, heads, RoPE and gated block; the only difference is Sessa's feedback solve
(plus its feedback projection and gamma). Times are forward (no autograd) and forward+backward of y.sum().
"""

from __future__ import annotations

import sys

import torch
from common import D_MODEL, environment, parser, setup, timeit, write_results
from torch import nn

from sessa.layers.block import GatedBlock
from sessa.layers.sessa import SessaLayer
from sessa.ops import DEFAULT_CHUNK_SIZE

FULL_T = (512, 1024, 2048, 4096, 8192, 16384, 32768)
QUICK_T = (32, 100)


def attention_layer(D: int, heads: int) -> nn.Module:
    """The Transformer baseline: GatedBlock around a causal SDPA multi-head attention mixer."""
    try:
        from sessa.layers.attention import AttentionMixer

        return GatedBlock(D, AttentionMixer(D, heads))
    except ImportError:  # the mixer module is not there: the same causal SDPA as Sessa's forward branch
        from sessa.layers.sessa import SessaMixer

        return GatedBlock(D, SessaMixer(D, heads, feedback=False))


def layers(D: int, heads: int, chunk_size: int) -> dict[str, nn.Module]:
    """The two layers under test, in fp32."""
    return {
        "sessa": SessaLayer(D, n_heads=heads, chunk_size=chunk_size),
        "attention": attention_layer(D, heads),
    }


def time_layer(layer: nn.Module, T: int, D: int, backward: bool, repeats: int) -> float:
    """Best wall time of a forward (no autograd) or forward+backward of the layer on x [1, T, D]."""
    x = torch.randn(1, T, D, requires_grad=backward)

    def step() -> None:
        if backward:
            layer.zero_grad(set_to_none=True)
            layer(x).sum().backward()
        else:
            with torch.no_grad():
                layer(x)

    return timeit(step, repeats=repeats, warmup=1, budget_s=20.0)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--max-t", type=int, default=8192, help="largest T to run")
    args = p.parse_args(argv)
    setup(args.threads)
    D = 16 if args.quick else D_MODEL
    heads = 2 if args.quick else args.heads
    ts = QUICK_T if args.quick else tuple(t for t in FULL_T if t <= args.max_t)
    mods = layers(D, heads, args.chunk_size)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in mods.items()}
    rows = []
    for T in ts:
        reps = 3 if T <= 4096 else 2
        row: dict = {"T": T}
        for name, m in mods.items():
            row[f"{name}_fwd_s"] = time_layer(m, T, D, False, reps)
            row[f"{name}_fwdbwd_s"] = time_layer(m, T, D, True, reps)
        row["fwd_ratio"] = row["sessa_fwd_s"] / row["attention_fwd_s"]
        row["fwdbwd_ratio"] = row["sessa_fwdbwd_s"] / row["attention_fwdbwd_s"]
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, file=sys.stderr, flush=True)
    payload = {
        "benchmark": "layer",
        "config": {"B": 1, "D": D, "heads": heads, "dtype": "float32", "chunk_size": args.chunk_size,
                   "params": params, "quick": args.quick},
        "env": environment(),
        "rows": rows,
    }
    cols = ["T", "sessa_fwd_s", "attention_fwd_s", "fwd_ratio", "sessa_fwdbwd_s", "attention_fwdbwd_s",
            "fwdbwd_ratio"]
    notes = [f"parameters: sessa {params['sessa']}, attention {params['attention']} (D = {D}, {heads} heads)",
             "ratio = Sessa time / attention time (lower is better); best of 3 (T <= 4096) or 2 runs"]
    write_results("layer", args.out, payload, cols, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
