"""Run logs (rank 0 only): CSV files rewritten atomically, optional TensorBoard, tqdm progress bar."""

from __future__ import annotations

import csv
import io
import math
import os
import time
from typing import Any

from sessa.utils.io import atomic_write_text

TRAIN_COLUMNS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s")


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


class LogWindow:
    """The steps since the last train_log row: their losses (the row logs their mean), time and tokens.

    Saved in every checkpoint (state.json "log_window") so a resumed run logs the same rows as an
    uninterrupted one, even when the checkpoint falls between two rows. `elapsed_s` counts training wall
    time across resumes (the clock restarts at each resume, from the saved offset).
    """

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.time_s, self.tokens = 0.0, 0
        self._origin = time.perf_counter()

    def add(self, loss: float, dt: float, tokens: int) -> None:
        self.losses.append(loss)
        self.time_s, self.tokens = self.time_s + dt, self.tokens + tokens

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._origin

    def row(self, step: int, lr: float, grad_norm: float) -> dict[str, Any]:
        """The train_log row closing the window (mean loss over its steps); the window restarts empty."""
        row = {"step": step, "loss": sum(self.losses) / len(self.losses), "lr": lr, "grad_norm": grad_norm,
               "tokens_per_s": self.tokens / max(self.time_s, 1e-9), "elapsed_s": self.elapsed_s()}
        self.losses, self.time_s, self.tokens = [], 0.0, 0
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "time_s": self.time_s, "tokens": self.tokens,
                "elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        losses = state.get("losses", [])
        if not isinstance(losses, list) or not all(x is None or isinstance(x, (int, float)) for x in losses):
            raise ValueError(f"log_window.losses must be a list of numbers, got {losses!r}")
        self.losses = [math.nan if x is None else float(x) for x in losses]  # null: a NaN saved as JSON
        self.time_s, self.tokens = float(state.get("time_s", 0.0)), int(state.get("tokens", 0))
        self._origin = time.perf_counter() - float(state.get("elapsed_s", 0.0))


class RunLogger:
    """Keeps the loss history and eval results; writes train_log.csv / eval_log.csv under out_dir.

    The CSVs are rewritten whole through a temp file (atomic, consistent with the last checkpoint) at
    evaluations, checkpoints, the end, and at most every `flush_s` seconds in between.
    """

    def __init__(self, out_dir: str | None, enabled: bool, tensorboard: bool, flush_s: float = 30.0) -> None:
        self.out_dir = out_dir if enabled else None
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.window = LogWindow()
        self.flush_s = flush_s
        self._last_flush = time.monotonic()
        self.tb = None
        if self.out_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: CSV only
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(os.path.join(self.out_dir, "tensorboard"))

    def log_train(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.tb is not None:
            for k in ("loss", "lr", "grad_norm", "tokens_per_s"):
                self.tb.add_scalar(f"train/{k}", row[k], row["step"])
        if self.out_dir is not None and time.monotonic() - self._last_flush > self.flush_s:
            self.flush()

    def log_eval(self, row: dict[str, Any]) -> None:
        self.evals.append(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"eval/{k}", v, row["step"])
        self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self.out_dir is None:
            return
        atomic_write_text(os.path.join(self.out_dir, "train_log.csv"), _csv_text(self.history, list(TRAIN_COLUMNS)))
        if self.evals:
            cols = list(dict.fromkeys(k for r in self.evals for k in r))
            atomic_write_text(os.path.join(self.out_dir, "eval_log.csv"), _csv_text(self.evals, cols))
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        if self.tb is not None:
            self.tb.close()


class Progress:
    """tqdm bar with loss and tokens/s, or nothing when disabled (non-zero ranks, `progress: false`)."""

    def __init__(self, enabled: bool, total: int, initial: int, **tqdm_args: Any) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, **{"desc": "train", "unit": "step", "dynamic_ncols": True,
                                                             **tqdm_args})

    def update(self, loss: float, tokens_per_s: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", lr=f"{lr:.2e}", refresh=False)
            self.bar.update(1)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
