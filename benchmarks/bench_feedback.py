"""Benchmark (a)+(d): chunked vs dense (naive) feedback solve, forward and forward+backward, and GFLOP/s.

    python benchmarks/bench_feedback.py            # B = 1, H = 1, D = 256, fp32, 2 threads, T = 512 ... 65536
    python benchmarks/bench_feedback.py --quick    # smoke run

Useful FLOPs (P = T (T - 1) / 2 strictly causal pairs, dk = dv = D):
    forward  2 P (dk + dv)           logits and alpha_fb s
    backward 2 P (3 dk + 2 dv)       recomputed logits, A^T w, w s^T, dlogit k, dlogit^T q
The dense path is skipped where its T x T matrix and triangular solve would be too slow or too big.
"""

from __future__ import annotations

import sys

import torch
from common import D_MODEL, environment, matmul_peak_gflops, parser, setup, timeit, write_results

from sessa.ops import DEFAULT_CHUNK_SIZE, feedback_solve

FULL_T = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
QUICK_T = (64, 200)
DENSE_FWD_MAX_T = 8192  # dense fwd at 16384 needs a 1 GiB matrix and ~20x the chunk time
DENSE_BWD_MAX_T = 4096  # dense fwd+bwd keeps several T x T buffers for autograd


def inputs(T: int, D: int, grad: bool) -> tuple[torch.Tensor, ...]:
    """q_b, k_b, f [1, T, 1, D] and gamma [1, T, 1] as the layer produces them (one head of width D)."""
    q, k, f = (torch.randn(1, T, 1, D) for _ in range(3))
    gamma = 0.999 * torch.tanh(1.0 + 0.5 * torch.randn(1, T, 1))
    return tuple(x.requires_grad_(grad) for x in (q, k, f, gamma))


def run_one(impl: str, T: int, D: int, chunk_size: int, backward: bool, repeats: int) -> float:
    """Best wall time of one forward (no autograd) or forward+backward of feedback_solve."""
    q, k, f, gamma = inputs(T, D, backward)

    def step() -> None:
        if backward:
            s = feedback_solve(q, k, f, gamma, impl=impl, chunk_size=chunk_size)
            s.backward(torch.ones_like(s))
        else:
            with torch.no_grad():
                feedback_solve(q, k, f, gamma, impl=impl, chunk_size=chunk_size)

    return timeit(step, repeats=repeats, warmup=1 if T <= 8192 else 0, budget_s=20.0)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--max-t", type=int, default=FULL_T[-1], help="largest T to run")
    args = p.parse_args(argv)
    setup(args.threads)
    D = 16 if args.quick else D_MODEL
    ts = QUICK_T if args.quick else tuple(t for t in FULL_T if t <= args.max_t)
    n_peak = 256 if args.quick else 2048
    peaks = [matmul_peak_gflops(n_peak)]
    rows = []
    for T in ts:
        pairs = T * (T - 1) / 2
        fl_fwd, fl_bwd = 2 * pairs * 2 * D, 2 * pairs * 5 * D
        reps = 3 if T <= 8192 else 1
        row: dict = {"T": T}
        row["chunk_fwd_s"] = run_one("chunk", T, D, args.chunk_size, False, reps)
        row["chunk_fwdbwd_s"] = run_one("chunk", T, D, args.chunk_size, True, reps)
        dense_fwd = args.quick or T <= DENSE_FWD_MAX_T
        dense_bwd = args.quick or T <= DENSE_BWD_MAX_T
        row["dense_fwd_s"] = run_one("naive", T, D, args.chunk_size, False, reps) if dense_fwd else None
        row["dense_fwdbwd_s"] = run_one("naive", T, D, args.chunk_size, True, reps) if dense_bwd else None
        row["fwd_speedup"] = row["dense_fwd_s"] / row["chunk_fwd_s"] if dense_fwd else None
        row["fwdbwd_speedup"] = row["dense_fwdbwd_s"] / row["chunk_fwdbwd_s"] if dense_bwd else None
        row["chunk_fwd_gflops"] = fl_fwd / row["chunk_fwd_s"] / 1e9
        row["chunk_fwdbwd_gflops"] = (fl_fwd + fl_bwd) / row["chunk_fwdbwd_s"] / 1e9
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, file=sys.stderr, flush=True)
    # the peak is measured before and after (the best of both): a busy machine only ever lowers it
    peaks.append(matmul_peak_gflops(n_peak))
    peak = max(peaks)
    for row in rows:
        row["fwd_pct_peak"] = 100 * row["chunk_fwd_gflops"] / peak
        row["fwdbwd_pct_peak"] = 100 * row["chunk_fwdbwd_gflops"] / peak
    payload = {
        "benchmark": "feedback_solve",
        "config": {"B": 1, "H": 1, "D": D, "dtype": "float32", "chunk_size": args.chunk_size, "quick": args.quick},
        "matmul_peak_gflops": peak,
        "matmul_peak_gflops_before_after": peaks,
        "env": environment(),
        "rows": rows,
    }
    cols = ["T", "chunk_fwd_s", "dense_fwd_s", "fwd_speedup", "chunk_fwdbwd_s", "dense_fwdbwd_s",
            "fwdbwd_speedup", "chunk_fwd_gflops", "fwd_pct_peak", "chunk_fwdbwd_gflops", "fwdbwd_pct_peak"]
    notes = [
        f"matmul peak measured in this run: {peak:.1f} GFLOP/s (best of before/after "
        f"{', '.join(f'{x:.1f}' for x in peaks)}; fp32 {n_peak}^3 GEMM, {args.threads} threads)",
        f"dense forward skipped above T = {DENSE_FWD_MAX_T}, dense fwd+bwd above T = {DENSE_BWD_MAX_T} "
        "(T x T matrices; time and memory grow as T^2)",
        "times are best-of-3 for T <= 8192, single runs above",
    ]
    write_results("feedback_solve", args.out, payload, cols, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
