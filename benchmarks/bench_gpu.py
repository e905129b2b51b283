"""GPU benchmark: Triton feedback solve, Sessa layer vs a flash-attention block, peak memory, cached decode.

    python benchmarks/bench_gpu.py            # one H100/H200, bf16, d_model 1024, 16 heads: about 5-8 minutes
    python benchmarks/bench_gpu.py --quick    # small sizes: a smoke run of every code path

Every figure comes from this one run, and every ratio is against a baseline measured in the same run:
- solve: feedback_solve fwd+bwd (one head of width D, as in the layer), impl triton vs chunk vs naive (dense,
  where its T x T matrices fit), at a fixed number of tokens per batch (B = tokens / T);
- layer: SessaLayer fwd+bwd (feedback via Triton) vs the same gated block without the feedback branch
  (`SessaMixer(feedback=False)`: exactly Sessa's forward attention), both with SDPA's flash backend, and
  each one's peak `torch.cuda.max_memory_allocated`;
- decode: tokens/s of a stack of cached Sessa layers vs the same stack with attention only (KV cache).
Value checks (NaN/Inf) are off, as by default (they run only in sessa.utils.checks.debug_checks mode).
A configuration that would overrun --budget-s is skipped and listed. Refuses to run without CUDA.
Writes gpu_solve / gpu_layer / gpu_decode .json and .md into --out.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import RESULTS_DIR, environment, write_results

from sessa.layers.block import GatedBlock
from sessa.layers.sessa import SessaMixer
from sessa.ops import feedback_solve

NO_CUDA = "bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured"
DENSE_MAX_T = 8192  # naive solve: several [B, T, T] float32 buffers


@dataclass
class Config:
    device: str = "cuda"
    dtype: torch.dtype = torch.bfloat16
    d_model: int = 1024
    n_heads: int = 16
    tokens: int = 65536  # tokens per batch: B = tokens // T
    ts: tuple[int, ...] = (2048, 8192, 32768, 65536)
    solve_impls: tuple[str, ...] = ("triton", "chunk", "naive")
    layer_impl: str = "triton"
    contexts: tuple[int, ...] = (8192, 32768)
    decode_layers: int = 4
    decode_steps: int = 50
    repeats: int = 3
    budget_s: float = 450.0
    start: float = field(default_factory=time.perf_counter)
    skipped: list[str] = field(default_factory=list)

    def time_left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def quick_config(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> Config:
    return Config(device=device, dtype=dtype, d_model=128, n_heads=4, tokens=1024, ts=(256, 512),
                  contexts=(256,), decode_layers=2, decode_steps=5, repeats=2)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_ms(fn: Callable[[], object], cfg: Config, repeats: int | None = None) -> float:
    """Best wall time (ms) of fn after one warm-up, synchronising the GPU around each call."""
    fn()
    sync(cfg.device)
    best = math.inf
    for _ in range(repeats or cfg.repeats):
        t0 = time.perf_counter()
        fn()
        sync(cfg.device)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def peak_gib(fn: Callable[[], object], cfg: Config) -> float | None:
    """Peak allocated GPU memory (GiB) while fn runs once (None off CUDA)."""
    if cfg.device != "cuda":
        fn()
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def measured(name: str, cfg: Config, est_s: float, fn: Callable[[], object]):
    """Run fn unless its estimated time exceeds the budget left, or it runs out of memory (-> None)."""
    if est_s > cfg.time_left():
        cfg.skipped.append(f"{name}: skipped (time budget)")
        return None
    try:
        return fn()
    except torch.OutOfMemoryError:
        cfg.skipped.append(f"{name}: out of memory")
        torch.cuda.empty_cache()
        return None


def solve_inputs(cfg: Config, T: int) -> list[torch.Tensor]:
    """q_b, k_b, f [B, T, 1, D] and gamma [B, T, 1] as the layer makes them; B = tokens / T."""
    B, D = max(1, cfg.tokens // T), cfg.d_model
    g = torch.Generator(device=cfg.device).manual_seed(0)
    q, k, f = (torch.randn(B, T, 1, D, device=cfg.device, dtype=cfg.dtype, generator=g) for _ in range(3))
    gamma = 0.999 * torch.tanh(1.0 + 0.5 * torch.randn(B, T, 1, device=cfg.device, generator=g))
    return [x.requires_grad_() for x in (q, k, f, gamma.to(cfg.dtype))]


def solve_rows(cfg: Config) -> list[dict]:
    rows = []
    for T in cfg.ts:
        leaves = solve_inputs(cfg, T)
        row: dict = {"T": T, "B": leaves[0].shape[0]}
        for impl in cfg.solve_impls:
            if impl == "naive" and T > DENSE_MAX_T:
                continue

            def step(impl=impl, leaves=leaves) -> None:
                s = feedback_solve(*leaves, impl=impl)
                torch.autograd.grad(s, leaves, torch.ones_like(s))

            def fwd(impl=impl, leaves=leaves) -> None:
                with torch.no_grad():
                    feedback_solve(*leaves, impl=impl)

            est = 0.0 if impl == "triton" else 4e-10 * T * cfg.tokens  # rough, only to respect the budget
            row[f"{impl}_fwd_ms"] = measured(f"solve {impl} T={T}", cfg, est, lambda f=fwd: best_ms(f, cfg))
            row[f"{impl}_fwdbwd_ms"] = measured(f"solve {impl} T={T} fwd+bwd", cfg, est, lambda s=step: best_ms(s, cfg))
            row[f"{impl}_peak_gib"] = measured(f"solve {impl} T={T} memory", cfg, est, lambda s=step: peak_gib(s, cfg))
        for impl in cfg.solve_impls[1:]:
            for kind in ("fwd", "fwdbwd"):
                base, fast = row.get(f"{impl}_{kind}_ms"), row.get(f"{cfg.solve_impls[0]}_{kind}_ms")
                row[f"speedup_vs_{impl}_{kind}"] = base / fast if base and fast else None
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    return rows


def blocks(cfg: Config, feedback: bool, n: int = 1) -> torch.nn.ModuleList:
    """n gated blocks: Sessa (feedback via cfg.layer_impl) or the same block with attention only."""
    torch.manual_seed(0)
    mods = [
        GatedBlock(cfg.d_model, SessaMixer(cfg.d_model, cfg.n_heads, feedback=feedback, impl=cfg.layer_impl))
        for _ in range(n)
    ]
    return torch.nn.ModuleList(mods).to(device=cfg.device, dtype=cfg.dtype)


def flash_only(cfg: Config):
    """SDPA restricted to the flash backend on CUDA (as FlashAttention-2 runs), unrestricted elsewhere."""
    if cfg.device != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def layer_rows(cfg: Config) -> list[dict]:
    models = {"sessa": blocks(cfg, True)[0], "attention": blocks(cfg, False)[0]}
    rows = []
    for T in cfg.ts:
        B = max(1, cfg.tokens // T)
        x = torch.randn(B, T, cfg.d_model, device=cfg.device, dtype=cfg.dtype, requires_grad=True)
        row: dict = {"T": T, "B": B}
        for name, model in models.items():

            def step(model=model, x=x) -> None:
                with flash_only(cfg):
                    y = model(x)
                y.backward(torch.ones_like(y))

            est = 1e-9 * T * cfg.tokens if name == "sessa" else 0.0
            row[f"{name}_fwdbwd_ms"] = measured(f"layer {name} T={T}", cfg, est, lambda s=step: best_ms(s, cfg))
            row[f"{name}_peak_gib"] = measured(f"layer {name} T={T} memory", cfg, est, lambda s=step: peak_gib(s, cfg))
            model.zero_grad(set_to_none=True)
            x.grad = None
        s, a = row["sessa_fwdbwd_ms"], row["attention_fwdbwd_ms"]
        row["fwdbwd_ratio"] = s / a if s and a else None
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    return rows


def filled_caches(stack: torch.nn.ModuleList, ctx: int, cfg: Config) -> list:
    """One cache per layer holding ctx random past positions (decode time does not depend on the values)."""
    caches = []
    for block in stack:
        m = block.mixer
        c = m.init_cache(1, dtype=cfg.dtype, device=cfg.device)
        kv = (1, ctx, m.n_kv_heads, m.head_dim)
        c.append_kv(torch.randn(kv, device=cfg.device, dtype=cfg.dtype), torch.randn(kv, device=cfg.device,
                                                                                      dtype=cfg.dtype))
        if m.feedback:
            fbk = (1, ctx, 1, m.d_model)
            c.append_feedback(torch.randn(fbk, device=cfg.device, dtype=cfg.dtype),
                              torch.randn(fbk, device=cfg.device, dtype=cfg.dtype))
        c.append_mask(None, ctx)
        caches.append(c)
    return caches


@torch.inference_mode()
def decode_ms(stack: torch.nn.ModuleList, ctx: int, cfg: Config) -> float:
    """Milliseconds per token through the whole stack, `decode_steps` tokens after one warm-up token."""
    caches = filled_caches(stack, ctx, cfg)
    x = torch.randn(1, 1, cfg.d_model, device=cfg.device, dtype=cfg.dtype)

    def steps(n: int) -> None:
        for _ in range(n):
            h = x
            for block, c in zip(stack, caches, strict=True):
                h, _ = block(h, cache=c, use_cache=True)

    steps(1)
    sync(cfg.device)
    t0 = time.perf_counter()
    steps(cfg.decode_steps)
    sync(cfg.device)
    return 1e3 * (time.perf_counter() - t0) / cfg.decode_steps


def decode_rows(cfg: Config) -> list[dict]:
    stacks = {"sessa": blocks(cfg, True, cfg.decode_layers).eval(),
              "attention": blocks(cfg, False, cfg.decode_layers).eval()}
    rows = []
    for ctx in cfg.contexts:
        row: dict = {"context": ctx, "layers": cfg.decode_layers}
        for name, stack in stacks.items():
            ms = measured(f"decode {name} ctx={ctx}", cfg, 5.0, lambda s=stack, c=ctx: decode_ms(s, c, cfg))
            row[f"{name}_ms_per_token"] = ms
            row[f"{name}_tokens_per_s"] = 1e3 / ms if ms else None
        s, a = row["sessa_ms_per_token"], row["attention_ms_per_token"]
        row["time_ratio"] = s / a if s and a else None
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    return rows


def run(cfg: Config, out: Path) -> dict[str, list[dict]]:
    """All three sections, each written as <out>/gpu_<section>.json and .md; returns their rows."""
    sections = {"solve": solve_rows(cfg), "layer": layer_rows(cfg), "decode": decode_rows(cfg)}
    env = environment()
    if cfg.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    with contextlib.suppress(ImportError):
        import triton

        env["triton"] = triton.__version__
    config = {k: v for k, v in vars(cfg).items() if k not in ("start", "skipped")}
    config["dtype"] = str(cfg.dtype)
    base = cfg.solve_impls[1] if len(cfg.solve_impls) > 1 else cfg.solve_impls[0]
    columns = {
        "solve": ["T", "B", *[f"{i}_{k}" for i in cfg.solve_impls for k in ("fwd_ms", "fwdbwd_ms", "peak_gib")],
                  *[f"speedup_vs_{i}_fwdbwd" for i in cfg.solve_impls[1:]]],
        "layer": ["T", "B", "sessa_fwdbwd_ms", "attention_fwdbwd_ms", "fwdbwd_ratio", "sessa_peak_gib",
                  "attention_peak_gib"],
        "decode": ["context", "layers", "sessa_tokens_per_s", "attention_tokens_per_s", "time_ratio"],
    }
    notes = {
        "solve": [f"{cfg.dtype}, one feedback head of width {cfg.d_model}, B = {cfg.tokens} // T; speedups are "
                  f"{base} (and naive) time / {cfg.solve_impls[0]} time in this run; naive only up to T = "
                  f"{DENSE_MAX_T}"],
        "layer": [f"gated block, d_model {cfg.d_model}, {cfg.n_heads} heads, SDPA flash backend; ratio = Sessa / "
                  "attention block fwd+bwd time in this run"],
        "decode": [f"batch 1, {cfg.decode_layers} layers, {cfg.decode_steps} tokens after a warm-up; time_ratio "
                   "= Sessa / attention (KV cache) time per token"],
    }
    for name, rows in sections.items():
        payload = {"benchmark": f"gpu_{name}", "config": config, "env": env, "skipped": cfg.skipped, "rows": rows}
        write_results(f"gpu_{name}", out, payload, columns[name], notes[name] + cfg.skipped)
    return sections


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every code path")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and markdown results")
    p.add_argument("--budget-s", type=float, default=None, help="skip configurations past this many seconds")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    cfg = quick_config() if args.quick else Config()
    if args.budget_s is not None:
        cfg.budget_s = args.budget_s
    torch.manual_seed(0)
    run(cfg, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
