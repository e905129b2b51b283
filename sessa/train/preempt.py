"""Graceful stop: on SIGTERM or SIGINT the trainer finishes the current optimiser step, writes a checkpoint
and raises TrainingStopped (the CLI exits with 128 + the signal number). A second signal aborts at once.

Clusters send SIGTERM some time before they kill a job (preemption, time limits); Ctrl-C sends SIGINT. The
handlers only set a flag that the training loop reads once per step (under torchrun it rides on the
step's existing all-reduce, so all ranks stop after the same step); they are installed by train() for its
duration, in the main thread only, and the previous handlers are restored afterwards.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class TrainingStopped(Exception):
    """train() stopped early on SIGTERM / SIGINT after finishing an optimiser step and writing a checkpoint.

    Attributes: signum, step (optimiser steps done), checkpoint (the folder to resume from; None when the
    run has no out_dir and no checkpoint was written, or on ranks other than 0), exit_code (128 + signum,
    the conventional status a command line should exit with). Resume with the same config and
    resume="auto" (`sessa train ... --resume auto`).
    """

    def __init__(self, signum: int, step: int, checkpoint: str | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (no out_dir)"
        super().__init__(f"stopped by {signal_name(signum)} after step {step}; {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _announce(text: str) -> None:
    """Write straight to fd 2: a signal handler must not re-enter a buffered stream (tqdm may be writing)."""
    try:
        os.write(2, (text + "\n").encode())
    except OSError:
        pass


class StopSignals:
    """`with StopSignals() as stop:` ... `stop.requested` / `stop.signum`.

    The first SIGTERM/SIGINT sets the flag and puts the previous handlers back, so a second signal does
    what it would have done without the trainer: SIGTERM ends the process at once, SIGINT raises
    KeyboardInterrupt. Outside the main thread (where Python cannot install handlers) nothing is installed.
    Signals whose previous handler is SIG_IGN (e.g. SIGINT under nohup) stay ignored.
    """

    def __init__(self, label: str = "") -> None:
        self.signum: int | None = None
        self.label = label
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()
        _announce(f"{self.label}received {signal_name(signum)}: finishing the current step, then writing a "
                  f"checkpoint (send it again to abort at once, without saving)")

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                # SIG_IGN stays ignored; None (a handler set outside Python) could not be put back: leave it
                if signal.getsignal(sig) not in (signal.SIG_IGN, None):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()
