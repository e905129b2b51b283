"""Run logs (rank 0 only): CSV files rewritten atomically, optional TensorBoard, tqdm progress bar."""

from __future__ import annotations

import csv
import io
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


class RunLogger:
    """Keeps the loss history and eval results; writes train_log.csv / eval_log.csv under out_dir.

    The CSVs are rewritten whole through a temp file (atomic, consistent with the last checkpoint) at
    evaluations, checkpoints, the end, and at most every `flush_s` seconds in between.
    """

    def __init__(self, out_dir: str | None, enabled: bool, tensorboard: bool, flush_s: float = 30.0) -> None:
        self.out_dir = out_dir if enabled else None
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
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

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)

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
