"""Shared benchmark helpers: thread set-up, timing, measured matmul peak, JSON + markdown output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sessa.utils.io import atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"
D_MODEL = 256
THREADS = 2


def parser(description: str) -> argparse.ArgumentParser:
    """Common flags: --quick (tiny smoke run), --out (results folder), --threads."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run that finishes in seconds")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and markdown results")
    p.add_argument("--threads", type=int, default=THREADS, help="torch.set_num_threads (default 2)")
    return p


def setup(threads: int) -> None:
    """Fix the thread count and seed so every run is comparable."""
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(0)


def timeit(fn: Callable[[], object], *, repeats: int = 3, warmup: int = 1, budget_s: float = 60.0) -> float:
    """Best-of-`repeats` wall time in seconds (the minimum filters noise from a shared machine).

    Stops repeating once `budget_s` has been spent, so long configurations run once after the warm-up.
    """
    for _ in range(warmup):
        fn()
    best, spent = float("inf"), 0.0
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 GEMM throughput (GFLOP/s) of an n x n x n matmul: the roofline for the solve."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    dt = timeit(lambda: a @ b, repeats=repeats)
    return 2.0 * n**3 / dt / 1e9


def environment() -> dict:
    """Machine facts recorded next to every result."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        # PASSIVE stops idle OpenMP workers from spinning: essential on a shared (oversubscribed) machine
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_1min": os.getloadavg()[0],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def fmt(x: object) -> str:
    """Short table cell: floats to 3 significant digits, None as a dash."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Rows of dicts as a GitHub markdown table over the given columns."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(name: str, out: Path, payload: dict, columns: Sequence[str], notes: Sequence[str] = ()) -> str:
    """Write <out>/<name>.json and <name>.md atomically, print the markdown and return it."""
    out.mkdir(parents=True, exist_ok=True)
    md = f"### {name}\n\n" + markdown_table(payload["rows"], columns) + "\n"
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    atomic_write_text(out / f"{name}.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out / f"{name}.md", md)
    print(md, flush=True)
    return md
