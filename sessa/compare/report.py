"""Bench output: a markdown table, a PNG plot and results.json, each written atomically into one folder."""

from __future__ import annotations

import io
import os
from typing import Any

from sessa.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def _pm(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _matched(match: dict[str, Any]) -> str:
    if match.get("matched") == "reference":
        return "reference"
    return f"{match['rel_diff']:+.1%}" if "rel_diff" in match else "ablation"


def _runs_stat(results: dict[str, Any], key: str) -> list[Any]:
    return sorted({r["test"].get(key) for m in results["models"].values() for r in m["runs"]}, key=str)


def format_table(results: dict[str, Any]) -> str:
    """Markdown table (test metrics as mean ± std over seeds, standard errors, difference to Sessa with its
    p-value, params, size match, throughput, paper value) followed by a legend that explains every column."""
    from sessa.compare.presets import model_summary
    from sessa.compare.stats import compare_to, mean_se

    metric, models = results["metric"], results["models"]
    ref = results.get("paper_reference") or {}
    n = max((len(m["runs"]) for m in models.values()), default=0)  # seeds finished (all asked for when complete)
    spread = f"mean ± std, {n} seeds" if n > 1 else "1 seed: no spread"
    lm = metric == "perplexity"
    cols = ["test perplexity", "top-1", "top-5"] if lm else ["test accuracy", "± SE"]
    diff_metric = "perplexity" if lm else "accuracy"
    diffs = compare_to(models, "sessa", diff_metric)
    head = ["model", *cols, "Δ vs sessa (p)", "test loss", "params", "size match", "tokens/s", "wall (s)"]
    if ref:
        head.append("paper")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in models.items():
        s = m["summary"]
        if lm:
            cells = [_pm(s["perplexity"]["mean"], s["perplexity"]["std"], 3), _pm(s["accuracy"]["mean"],
                     s["accuracy"]["std"]), _pm(s["top5"]["mean"], s["top5"]["std"])]
        else:
            cells = [_pm(s[metric]["mean"], s[metric]["std"]), _num(mean_se(m, metric))]
        if len(m["runs"]) != n:  # an unfinished study: say how many seeds this row has
            cells[0] += f" ({len(m['runs'])} seed{'s' if len(m['runs']) > 1 else ''})"
        d = diffs.get(name)
        if d is None:
            delta = "-"
        else:
            star = "*" if d["p"] is not None and d["p"] < 0.05 else ""
            p = "" if d["p"] is None else f" ({'<1e-6' if d['p'] < 1e-6 else format(d['p'], '.2g')}){star}"
            delta = f"{d['delta']:+.4f}{p}"
        row = [name, *cells, delta, _pm(s["loss"]["mean"], s["loss"]["std"], 3), f"{m['params']:,}",
               _matched(m["match"]), f"{m['tokens_per_s']:,.0f}", f"{m['wall_time_s']:.1f}"]
        if ref:
            row.append(_pm(*ref["values"][name]) if name in ref["values"] else "-")
        lines.append("| " + " | ".join(row) + " |")
    examples, tokens = _runs_stat(results, "examples"), _runs_stat(results, "scored_tokens")
    chance = [c for c in _runs_stat(results, "majority_accuracy") if c is not None]
    b = results["budget"]
    what = ("exp(mean next-token loss); top-1 / top-5: the next token is the most likely / among the 5 most "
            "likely" if lm else "the fraction of scored answer tokens predicted exactly")
    legend = [
        "",
        f"- **{cols[0]}** ({spread}): {what}, on {'/'.join(map(str, examples))} test examples "
        f"({'/'.join(map(str, tokens))} scored tokens) per run.",
    ]
    if chance and not lm:
        legend.append(f"- **chance level**: {chance[0]:.4f} (always giving the most frequent answer of the test set).")
    if not lm:
        legend.append("- **± SE**: standard error of the mean: std / √seeds, at least the binomial SE "
                      "√(p(1-p)/n) over n test examples.")
    legend += [
        f"- **Δ vs sessa (p)**: difference of the mean {diff_metric} to Sessa's and the two-sided p of a normal "
        "approximation; * marks p < 0.05 (a rough guide with few seeds).",
        "- **size match**: reference = Sessa itself; ±x % = the baseline's parameter count relative to Sessa's "
        "after its width was chosen to match; ablation = Sessa's width with the feedback removed.",
        "- **tokens/s**, **wall**: training throughput and time per run on this machine.",
    ]
    if ref:
        legend.append(f"- **paper**: the paper's value (mean ± std over 2 seeds) at {ref['scale']}: another "
                      "scale, to compare the ordering, not the numbers.")
    legend.append("- models: " + "; ".join(f"**{name}**: {model_summary(name)}" for name in models) + ".")
    legend.append(f"- task {results['task']} {results['task_options']}; preset {results['preset']}; budget "
                  f"{b['steps']} steps × batch {b['batch_size']}, AdamW lr {b['lr']} (warm-up {b['warmup_steps']}, "
                  f"cosine to {b['min_lr_ratio']}×), clip {b['grad_clip']}; seeds {results['seeds']}; training time "
                  f"{sum(r['wall_time_s'] for m in results['models'].values() for r in m['runs']):.0f} s summed over "
                  "the finished runs" + ("" if results.get("complete", True) else
                                         " (unfinished: some runs are still missing)") + ".")
    return "\n".join(lines + legend)


def _pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported on first plot: matplotlib is slow to load)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _mean_accuracy(bins: list[dict[str, Any]]) -> list[float]:
    """Per-bin accuracy averaged over runs whose bins line up (same number of bins, in the same order)."""
    return [sum(b["accuracy"][j] for b in bins) / len(bins) for j in range(len(bins[0]["accuracy"]))]


def plot_png(results: dict[str, Any]) -> bytes:
    """PNG: metric per model (mean ± std), accuracy vs lag or length (mean over seeds), training loss."""
    plt = _pyplot()
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
        bins = [r["test"][group] for r in runs]
        if all(len(b["accuracy"]) == len(bins[0]["centers"]) for b in bins):
            axes[1].plot(bins[0]["centers"], _mean_accuracy(bins), "o-", color=f"C{i}", label=n)
        hist = runs[0]["loss_history"]
        k = max(1, len(hist) // 50)  # running mean for readability
        smooth = [sum(hist[j:j + k]) / len(hist[j:j + k]) for j in range(0, len(hist), k)]
        axes[2].plot([j * k for j in range(len(smooth))], smooth, color=f"C{i}", label=n)
    if group == "by_lag":
        axes[1].set_xlabel("query lag (tokens); test lags beyond training max are extrapolation")
        hi = results.get("max_train_lag") or results["task_options"].get("max_lag")
        if hi:
            axes[1].axvline(hi, color="grey", ls="--", lw=1)
    else:
        axes[1].set_xlabel("sequence length (tokens)")
    axes[1].set_ylabel("test accuracy")
    axes[1].legend()
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("training loss (seed 0)")
    axes[2].legend()
    return _png(fig)


def plot_extrapolation(results: dict[str, Any]) -> bytes:
    """PNG: test accuracy vs query lag for every model (mean over seeds, one thin line per seed), with the
    longest training lag marked: right of it the models extrapolate."""
    fig, ax = _pyplot().subplots(figsize=(7.5, 4.5))
    for i, (name, m) in enumerate(results["models"].items()):
        runs = [r["test"]["by_lag"] for r in m["runs"] if "by_lag" in r["test"]]
        if not runs:
            continue
        for r in runs:
            ax.plot(r["centers"], r["accuracy"], color=f"C{i}", lw=0.6, alpha=0.35)
        if all(r["centers"] == runs[0]["centers"] for r in runs):
            ax.plot(runs[0]["centers"], _mean_accuracy(runs), "o-", color=f"C{i}", label=name)
    hi = results.get("max_train_lag")
    if hi:
        ax.axvline(hi, color="grey", ls="--", lw=1, label=f"longest training lag ({hi})")
    ax.set_xlabel("lag: tokens from the answer back to its evidence")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(bottom=0.0)  # accuracies at laptop scale are low: let the top follow the data
    n = max((len(m["runs"]) for m in results["models"].values()), default=0)
    ax.set_title(f"{results['task']}: accuracy vs lag ({n} seed{'s' if n > 1 else ''}; thin lines: single seeds)")
    ax.legend(fontsize=8)
    return _png(fig)


def format_curve_table(results: dict[str, Any]) -> str:
    """Markdown: test accuracy per lag bin (rows: models, mean over seeds; columns: mean lag of the bin), the
    text form of plot_extrapolation. A model's row averages the seeds binned like its first seed; a model
    binned differently from the first model has no row."""
    rows, header = [], None
    for name, m in results["models"].items():
        runs = [r["test"]["by_lag"] for r in m["runs"] if "by_lag" in r["test"]]
        if not runs:
            continue
        acc = _mean_accuracy([r for r in runs if r["centers"] == runs[0]["centers"]])
        header = header or runs[0]["centers"]
        if runs[0]["centers"] == header:
            rows.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in acc) + " |")
    if header is None:
        return ""
    hi = results.get("max_train_lag")
    cols = [f"{c:.0f}" + ("*" if hi and c > hi else "") for c in header]
    lines = ["| model \\ lag | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1), *rows]
    if hi:
        lines.append(f"\n\\* beyond the longest training lag ({hi}). Mean over seeds; the lag is the mean in each bin.")
    return "\n".join(lines)


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
