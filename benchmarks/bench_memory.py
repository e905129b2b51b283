"""Benchmark (c): peak memory (RSS high-water mark) of forward+backward, each config in a fresh subprocess.

    python benchmarks/bench_memory.py              # SessaLayer up to T = 65536, attention layer, solves
    python benchmarks/bench_memory.py --quick

For every config a child process builds the inputs, records ru_maxrss, runs forward+backward once and
records ru_maxrss again; the row reports the high-water mark and the increase caused by the step, plus the
increase per token (constant per token = linear memory in T).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import D_MODEL, environment, parser, setup, write_results

FULL = [
    ("solve_chunk", 8192), ("solve_naive", 8192), ("solve_chunk", 32768),
    ("attention_layer", 8192), ("attention_layer", 32768),
    ("sessa_layer", 2048), ("sessa_layer", 8192), ("sessa_layer", 32768), ("sessa_layer", 65536),
]
QUICK = [("solve_chunk", 64), ("sessa_layer", 64)]
LIMIT_GIB = 24.0


def rss_gib() -> float:
    """High-water mark of this process's resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _run(kind: str, T: int, D: int, heads: int) -> dict:
    """Build the config, measure RSS before and after one forward+backward."""
    from sessa.ops import DEFAULT_CHUNK_SIZE, feedback_solve

    if kind.startswith("solve_"):
        q, k, f = (torch.randn(1, T, 1, D, requires_grad=True) for _ in range(3))
        gamma = (0.999 * torch.tanh(1.0 + 0.5 * torch.randn(1, T, 1))).requires_grad_()
        impl = kind.removeprefix("solve_")

        def step() -> None:
            feedback_solve(q, k, f, gamma, impl=impl).sum().backward()
    else:
        from bench_layer import layers

        layer = layers(D, heads, DEFAULT_CHUNK_SIZE)["sessa" if kind == "sessa_layer" else "attention"]
        x = torch.randn(1, T, D, requires_grad=True)

        def step() -> None:
            layer(x).sum().backward()

    before = rss_gib()
    t0 = time.perf_counter()
    step()
    return {"rss_before_gib": before, "peak_rss_gib": rss_gib(), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max-t", type=int, default=65536, help="largest T to run")
    p.add_argument("--child", nargs=2, metavar=("KIND", "T"), help="internal: run one config here, print JSON")
    args = p.parse_args(argv)
    setup(args.threads)
    D = 16 if args.quick else D_MODEL
    heads = 2 if args.quick else args.heads
    if args.child:  # inside the fresh subprocess: one config, JSON on stdout
        print(json.dumps(_run(args.child[0], int(args.child[1]), D, heads)))
        return 0
    configs = QUICK if args.quick else [(k, t) for k, t in FULL if t <= args.max_t]
    rows = []
    for kind, T in configs:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(T), "--threads", str(args.threads)]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        row: dict = {"config": kind, "T": T}
        if proc.returncode != 0:
            row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        else:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            row["step_gib"] = row["peak_rss_gib"] - row["rss_before_gib"]
            row["step_kib_per_token"] = row["step_gib"] * 2**20 / T
            row["within_24gib"] = row["peak_rss_gib"] <= LIMIT_GIB
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    payload = {
        "benchmark": "memory",
        "config": {"B": 1, "D": D, "heads": heads, "dtype": "float32", "quick": args.quick},
        "env": environment(),
        "rows": rows,
    }
    cols = ["config", "T", "peak_rss_gib", "step_gib", "step_kib_per_token", "seconds", "within_24gib", "error"]
    notes = ["peak_rss_gib: ru_maxrss of a fresh process after one forward+backward (includes torch itself)",
             "step_gib: increase of the high-water mark caused by the step; per token constant = linear in T",
             "solve_* rows: feedback_solve alone (H = 1, width D); *_layer rows: the full layer"]
    write_results("memory", args.out, payload, cols, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
