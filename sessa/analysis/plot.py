"""Log-log plot of influence profiles with their theoretical slopes (matplotlib, Agg backend, atomic write)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Curve:
    """One profile: values at lags; `slope` draws a dashed reference lag^-slope through the curve at `anchor`."""

    label: str
    lags: Sequence[float] | np.ndarray
    values: Sequence[float] | np.ndarray
    slope: float | None = None
    slope_label: str | None = None
    anchor: float | None = None
    theory: Sequence[float] | np.ndarray | None = None  # any theoretical curve at `lags` (e.g. an exponential)
    theory_label: str | None = None
    panel: str = ""  # curves with the same panel share a subplot


def plot_tails(
    curves: Sequence[Curve],
    path: str | os.PathLike,
    *,
    title: str = "Influence vs lag",
    fit_range: tuple[float, float] | None = None,
    extra: Mapping[str, str] | None = None,
    y_floor: float = 1e-6,
) -> str:
    """Write a log-log PNG of every curve (positive values only) and its dashed theory; returns path.

    The y axis stops at y_floor times the largest value, so an exponential tail does not squash the others.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    from sessa.utils.io import atomic_write_bytes

    if not curves:
        raise ValueError("curves must hold at least one Curve")
    panels: dict[str, list[Curve]] = {}
    for c in curves:  # one subplot per panel name, in order of first appearance
        panels.setdefault(c.panel, []).append(c)
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 5.5), squeeze=False)
    try:
        for ax, (name, group) in zip(axes[0], panels.items(), strict=True):
            _draw(ax, group, fit_range, y_floor)
            ax.set_title(f"{title} — {name}" if name else title)
        if extra:
            ax = axes[0][0]
            ax.text(0.99, 0.99, "\n".join(f"{k}: {v}" for k, v in extra.items()), transform=ax.transAxes,
                    ha="right", va="top", fontsize=7, family="monospace")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return os.fspath(path)


def _draw(ax, curves: Sequence[Curve], fit_range: tuple[float, float] | None, y_floor: float) -> None:
    """Curves, their dashed power-law slopes and dotted theory curves on one log-log axis."""
    top = 0.0
    for i, c in enumerate(curves):
        x = np.asarray(c.lags, dtype=np.float64)
        y = np.abs(np.asarray(c.values, dtype=np.float64))
        if x.shape != y.shape:
            raise ValueError(f"curve {c.label!r}: lags and values differ in length ({x.size} vs {y.size})")
        ok = (x > 0) & (y > 0) & np.isfinite(y)  # log axes cannot show lag 0 or a zero influence
        color = f"C{i % 10}"
        ax.loglog(x[ok], y[ok], color=color, lw=1.6, label=c.label)
        if c.slope is not None and ok.any():
            x0 = float(c.anchor) if c.anchor is not None else float(x[ok][0])
            y0 = float(np.interp(x0, x[ok], y[ok]))
            xs = np.geomspace(x0, x[ok].max(), 32)
            ax.loglog(xs, y0 * (xs / x0) ** (-c.slope), color=color, ls="--", lw=1.0,
                      label=c.slope_label or f"theory: slope -{c.slope:g}")
        if c.theory is not None:
            th = np.asarray(c.theory, dtype=np.float64)
            if th.shape != x.shape:
                raise ValueError(f"curve {c.label!r}: theory must have one value per lag")
            good = ok & (th > 0)
            ax.loglog(x[good], th[good], color=color, ls=":", lw=1.2, label=c.theory_label or "theory")
        if ok.any():
            top = max(top, float(y[ok].max()))
    if fit_range is not None:
        ax.axvspan(fit_range[0], fit_range[1], color="0.9", zorder=0, label="fit range")
    if top > 0:
        ax.set_ylim(bottom=top * y_floor, top=top * 2)
    ax.set_xlabel("lag  l = t - tau")
    ax.set_ylabel("influence  |d out_t / d in_tau|")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
