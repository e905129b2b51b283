"""Bench output: a markdown table, a PNG plot and results.json, each written atomically into one folder."""

from __future__ import annotations

import io
import os
from typing import Any

from sessa.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def _pm(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {(std or 0.0):.{digits}f}"


def format_table(results: dict[str, Any]) -> str:
    """Markdown table: test metric mean ± std over seeds, loss, params, tokens/s, wall time (+ paper value)."""
    metric = results["metric"]
    ref = (results.get("paper_reference") or {}).get("values", {})
    n = len(results["seeds"])
    head = (f"| model | test {metric} (mean ± std, {n} seed{'s' if n > 1 else ''}) | test loss | params | "
            f"matched | tokens/s | wall time (s) | paper |")
    lines = [head, "|" + "---|" * 8]
    for name, m in results["models"].items():
        s = m["summary"]
        match = m["match"]
        matched = "reference" if match.get("matched") == "reference" else (
            f"{match['rel_diff']:+.1%}" if "rel_diff" in match else "ablation")
        paper = _pm(*ref[name]) if name in ref else "-"
        lines.append(
            f"| {name} | {_pm(s[metric]['mean'], s[metric]['std'])} | {_pm(s['loss']['mean'], s['loss']['std'], 3)} "
            f"| {m['params']:,} | {matched} | {m['tokens_per_s']:,.0f} | {m['wall_time_s']:.1f} | {paper} |"
        )
    b = results["budget"]
    lines.append("")
    lines.append(f"Task {results['task']} {results['task_options']}; preset {results['preset']}; budget "
                 f"{b['steps']} steps x batch {b['batch_size']}, AdamW lr {b['lr']} (warmup {b['warmup_steps']}, "
                 f"cosine to {b['min_lr_ratio']}x), clip {b['grad_clip']}; seeds {results['seeds']}; "
                 f"total {results.get('total_time_s', 0.0):.0f} s.")
    return "\n".join(lines)


def plot_png(results: dict[str, Any]) -> bytes:
    """PNG: metric per model (mean ± std), accuracy vs lag or length (mean over seeds), training loss."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metric = results["metric"]
    names = list(results["models"])
    group = "by_lag" if all("by_lag" in r["test"] for m in results["models"].values() for r in m["runs"]) \
        else "by_length"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    means = [results["models"][n]["summary"][metric]["mean"] or 0.0 for n in names]
    stds = [results["models"][n]["summary"][metric]["std"] or 0.0 for n in names]
    axes[0].bar(names, means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(names))])
    axes[0].set_ylabel(f"test {metric}")
    axes[0].set_title(f"{results['task']}: test {metric} ({len(results['seeds'])} seed(s))")
    for i, n in enumerate(names):
        runs = results["models"][n]["runs"]
        centers = runs[0]["test"][group]["centers"]
        acc = [sum(r["test"][group]["accuracy"][j] for r in runs) / len(runs) for j in range(len(centers))
               if all(len(r["test"][group]["accuracy"]) == len(centers) for r in runs)]
        if len(acc) == len(centers):
            axes[1].plot(centers, acc, "o-", color=f"C{i}", label=n)
        hist = runs[0]["loss_history"]
        k = max(1, len(hist) // 50)  # running mean for readability
        smooth = [sum(hist[j:j + k]) / len(hist[j:j + k]) for j in range(0, len(hist), k)]
        axes[2].plot([j * k for j in range(len(smooth))], smooth, color=f"C{i}", label=n)
    if group == "by_lag":
        axes[1].set_xlabel("query lag (tokens); test lags beyond training max are extrapolation")
        hi = results["task_options"].get("max_lag")
        if hi:
            axes[1].axvline(hi, color="grey", ls="--", lw=1)
    else:
        axes[1].set_xlabel("sequence length (tokens)")
    axes[1].set_ylabel("test accuracy")
    axes[1].legend()
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("training loss (seed 0)")
    axes[2].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(results: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write results.json, results.md and results.png into out_dir (each via temp file + os.replace)."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out must be a folder, but {out_dir!r} is a file")
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"results.{k}") for k in ("json", "md", "png")}
    atomic_write_json(paths["json"], results)
    atomic_write_text(paths["md"], format_table(results) + "\n")
    atomic_write_bytes(paths["png"], plot_png(results))
    return paths
