"""Decode speed: per-token time of a Sessa layer stack vs a Transformer KV-cache decode of the same width.

Both stacks are `n_layers` x the same GatedBlock; the Transformer's mixer is Sessa's forward branch alone
(SDPA with RoPE and a KV cache: `SessaMixer(feedback=False)`), so the difference is exactly the feedback
step (docs/equations.md §3: one extra single-head attention over the cached k_b and s, width D). Caches are
filled with random tensors of the context length (decode time does not depend on their values), then
`--steps` tokens are decoded; the two models alternate in rounds so load on a shared machine hits both.

    .venv/bin/python benchmarks/bench_decode.py      # contexts 512 2048 8192, d_model 512, 8 heads, 4 layers
Writes benchmarks/results/decode.json and decode.md. Target: Sessa <= 2x the Transformer at 8192.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from sessa.layers.block import GatedBlock
from sessa.layers.sessa import SessaMixer
from sessa.utils.io import atomic_write_json, atomic_write_text

MODELS = {"sessa": True, "transformer": False}  # name -> feedback branch on


def build(args: argparse.Namespace, feedback: bool) -> torch.nn.ModuleList:
    torch.manual_seed(0)
    return torch.nn.ModuleList(
        GatedBlock(args.d_model, SessaMixer(args.d_model, args.n_heads, args.n_kv_heads, feedback=feedback))
        for _ in range(args.n_layers)
    ).eval()


def filled_caches(stack: torch.nn.ModuleList, ctx: int) -> list:
    """One cache per layer holding ctx random past positions (K after RoPE, V, and k_b, s for Sessa)."""
    caches = []
    for block in stack:
        m = block.mixer
        c = m.init_cache(1, dtype=torch.float32)
        c.append_kv(torch.randn(1, ctx, m.n_kv_heads, m.head_dim), torch.randn(1, ctx, m.n_kv_heads, m.head_dim))
        if m.feedback:
            c.append_feedback(torch.randn(1, ctx, 1, m.d_model), torch.randn(1, ctx, 1, m.d_model))
        c.append_mask(None, ctx)
        caches.append(c)
    return caches


def cache_bytes(caches: list) -> int:
    total = 0
    for c in caches:
        for t in (c.k, c.v, c.k_b, c.s):
            if t is not None:
                total += t.numel() * t.element_size()
    return total


@torch.inference_mode()
def decode_round(stack, caches, x: torch.Tensor, steps: int) -> float:
    """Seconds per token for `steps` decode steps through the whole stack."""
    t0 = time.perf_counter()
    for _ in range(steps):
        h = x
        for block, c in zip(stack, caches, strict=True):
            h, _ = block(h, cache=c, use_cache=True)
    return (time.perf_counter() - t0) / steps


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    stacks = {name: build(args, fb) for name, fb in MODELS.items()}
    x = torch.randn(1, 1, args.d_model)
    rows = []
    for ctx in args.contexts:
        caches = {name: filled_caches(stack, ctx) for name, stack in stacks.items()}
        mb = {name: cache_bytes(c) / 2**20 for name, c in caches.items()}  # at exactly ctx positions
        for name in MODELS:  # warm-up; also grows each buffer once, so no reallocation is timed
            decode_round(stacks[name], caches[name], x, args.warmup)
        times: dict[str, list[float]] = {name: [] for name in MODELS}
        for _ in range(args.rounds):
            for name in MODELS:
                times[name].append(decode_round(stacks[name], caches[name], x, args.steps))
        med = {name: statistics.median(t) for name, t in times.items()}
        rows.append({
            "context": ctx,
            **{f"{n}_ms_per_token": 1e3 * med[n] for n in MODELS},
            **{f"{n}_tokens_per_s": 1.0 / med[n] for n in MODELS},
            **{f"{n}_cache_mb": mb[n] for n in MODELS},
            "ratio_sessa_over_transformer": med["sessa"] / med["transformer"],
        })
        print(f"ctx {ctx:6d}: sessa {1e3 * med['sessa']:.3f} ms/token, transformer "
              f"{1e3 * med['transformer']:.3f} ms/token, ratio {rows[-1]['ratio_sessa_over_transformer']:.2f}",
              flush=True)
    return {
        "benchmark": "decode",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "target": "sessa ms/token <= 2x transformer at context 8192",
        "rows": rows,
    }


def markdown(result: dict) -> str:
    c = result["config"]
    lines = [
        f"Decode, batch 1, d_model {c['d_model']}, {c['n_heads']} heads ({c['n_kv_heads'] or c['n_heads']} kv), "
        f"{c['n_layers']} layers, fp32, {c['threads']} thread(s); median of {c['rounds']} rounds x "
        f"{c['steps']} tokens. Command: `{result['command']}`",
        "",
        "| context | Sessa ms/token | Transformer ms/token | ratio | Sessa tokens/s | Transformer tokens/s "
        "| Sessa cache MB | Transformer cache MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['context']} | {r['sessa_ms_per_token']:.3f} | {r['transformer_ms_per_token']:.3f} "
            f"| {r['ratio_sessa_over_transformer']:.2f} | {r['sessa_tokens_per_s']:.0f} "
            f"| {r['transformer_tokens_per_s']:.0f} | {r['sessa_cache_mb']:.1f} | {r['transformer_cache_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", type=int, nargs="+", default=[512, 2048, 8192])
    # default: caches larger than a server's L3 at 8192 (as in any real model), so neither model is timed
    # from cache-resident memory while the other is not
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--n-kv-heads", type=int, default=None)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=32, help="decoded tokens per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (contexts 64 128, few steps)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.contexts, args.steps, args.rounds, args.warmup = [64, 128], 4, 2, 1
    for name in ("d_model", "n_layers", "steps", "rounds", "warmup", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.contexts) < 1:
        p.error("--contexts must be >= 1")
    result = run(args)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_json(os.path.join(args.out, "decode.json"), result)
    atomic_write_text(os.path.join(args.out, "decode.md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
