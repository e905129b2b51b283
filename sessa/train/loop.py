"""train(cfg): one clean function (no global state kept between calls) that trains a SessaLM on a task.

Per optimizer step: the global batch (a pure function of seed and step, sessa.train.data) is split into
this rank's micro-batches; each micro-batch's summed token loss is scaled by world_size / n_scored_global,
so the accumulated (and DDP/FSDP-averaged) gradient is the gradient of the mean token loss over the whole
global batch -- the same whatever the world size or accumulation. Then grad clipping, a finiteness check,
AdamW, the warmup+cosine lr, eval/checkpoint/log on schedule.

Before anything is built, the output folder is checked, locked and cleaned (sessa.train.outdir). SIGTERM /
SIGINT stop the run after the current step with a checkpoint (sessa.train.preempt.TrainingStopped).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from typing import Any

import torch

from sessa.models import SessaLM
from sessa.models.lm import lm_loss
from sessa.tasks import build_task, check_task_object
from sessa.train import distributed as D
from sessa.train.checkpoint import (
    CheckpointError,
    newest_valid_checkpoint,
    read_training_checkpoint,
    resolve_checkpoint,
    resume_candidates,
)
from sessa.train.config import TrainConfig
from sessa.train.data import GlobalBatches, accumulation, step_batches
from sessa.train.evaluate import check_metric_names, evaluate
from sessa.train.logging import Progress, RunLogger
from sessa.train.optim import WarmupCosine, build_optimizer
from sessa.train.outdir import OutDirError, OutDirLock, prepare_out_dir
from sessa.train.preempt import StopSignals, TrainingStopped
from sessa.train.rng import seed_everything, set_rng_state
from sessa.train.state import restore_state, save_state
from sessa.train.threads import apply_threads
from sessa.utils import IGNORE_INDEX

# Changing any of these between a run and its resume would change the trajectory: refuse.
RESUME_MUST_MATCH = ("model", "task", "task_options", "batch_size", "seed", "steps", "lr", "weight_decay",
                     "betas", "adam_eps", "warmup_steps", "min_lr_ratio", "grad_clip", "precision")


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient norm became NaN/Inf; training stopped before the update (nothing poisoned)."""


def _check_task(task: Any, cfg: TrainConfig) -> None:
    check_task_object(task, "task")
    if task.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"model.vocab_size ({cfg.model.vocab_size}) must be >= the task's vocab_size "
                         f"({task.vocab_size}); set model.vocab_size: {task.vocab_size}")
    check_metric_names(task.metric_names)


def _say(text: str, info: D.DistInfo) -> None:
    if info.is_main:
        print(text, file=sys.stderr, flush=True)


def _warn(text: str, info: D.DistInfo) -> None:
    if info.is_main:
        print(f"warning: {text}", file=sys.stderr, flush=True)


def _resume_from(cfg: TrainConfig, info: D.DistInfo) -> tuple[str, tuple[Any, Any, dict[str, Any]]] | None:
    """(folder, read_training_checkpoint(folder)) to resume from, or None for a fresh start.

    resume="auto" takes the newest checkpoint of out_dir that verifies, naming each one it skips and why;
    an explicit folder must verify itself.
    """
    if cfg.resume is False:
        return None
    if cfg.resume in (True, "auto"):
        root = os.path.join(cfg.out_dir, "checkpoints")
        if not resume_candidates(root):
            return None  # nothing saved yet: start fresh
        found = newest_valid_checkpoint(root, lambda f, why: _warn(f"resume: skipping {f}: {why}", info))
        if found is None:
            raise CheckpointError(f"{root}: none of the checkpoints verifies (reasons above); move them away or "
                                  f"choose another out_dir")
        return found
    folder = resolve_checkpoint(cfg.resume)
    return folder, read_training_checkpoint(folder)


def _open_out_dir(cfg: TrainConfig, info: D.DistInfo) -> OutDirLock | None:
    """Rank 0 checks, locks and cleans out_dir; every rank raises the same error if that failed."""
    if cfg.out_dir is None:
        return None
    lock, error = None, None
    if info.is_main:
        try:
            lock, notes = prepare_out_dir(cfg.out_dir, cfg.resume)
            for note in notes:
                _warn(note, info)
        except OutDirError as e:
            error = str(e)
    if info.enabled:
        error = D.broadcast_object(error, info)
    if error:
        raise OutDirError(error)
    return lock


def _check_resume_config(saved: dict[str, Any], cfg: TrainConfig, folder: str) -> None:
    now = cfg.to_dict()
    diff = [k for k in RESUME_MUST_MATCH if k in saved and saved[k] != now[k]]
    if diff:
        parts = []
        for k in diff:
            a, b = saved[k], now[k]
            if isinstance(a, dict) and isinstance(b, dict):  # name only the changed sub-fields
                parts += [f"{k}.{s}: checkpoint {a.get(s)!r} vs now {b.get(s)!r}" for s in sorted(set(a) | set(b))
                          if a.get(s) != b.get(s)]
            else:
                parts.append(f"{k}: checkpoint {a!r} vs now {b!r}")
        details = "; ".join(parts)
        raise ValueError(f"cannot resume from {folder}: the config changed ({details})")


def _scored(labels: torch.Tensor) -> int:
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def train(cfg: TrainConfig, *, task: Any = None, return_model: bool = False,
          progress_bar: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train per `cfg`; returns {"final", "history", "evals", "params", "tokens_per_s", "wall_time_s",
    "out_dir", "steps", "checkpoint"} (and "model", the trained SessaLM, with return_model=True).
    progress_bar: extra tqdm arguments for the progress bar (e.g. desc, position) when cfg.progress is on.

    Launch under torchrun for DDP (or FSDP with cfg.fsdp); the process group is created and destroyed here
    unless the caller already created one.

    One run per out_dir: it is locked for the run (OutDirError if another run holds it), and a fresh run
    (resume False) into a folder holding checkpoints is refused. SIGTERM or SIGINT (in the main thread)
    stops the run after the current optimiser step with a checkpoint, raising TrainingStopped (its
    `checkpoint`, `step`, `exit_code`); resume with resume="auto". A second signal aborts at once.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    info = D.setup(cfg.device)
    threads_before = apply_threads(cfg.threads, cuda=info.device.type == "cuda",
                                   say=lambda line: _say(line, info))
    lock = None
    try:
        lock = _open_out_dir(cfg, info)
        with StopSignals(label=f"rank {info.rank}: " if info.enabled else "") as stop:
            result = _train(cfg, task, info, return_model, stop, progress_bar)
    except TrainingStopped:  # every rank stopped after the same step: leave together
        lock.release() if lock else None
        D.teardown(info)
        raise
    except BaseException:
        lock.release() if lock else None
        D.teardown(info, clean=False)
        raise
    finally:  # no global state kept between calls
        if threads_before is not None:
            torch.set_num_threads(threads_before)
    lock.release() if lock else None
    D.teardown(info)
    return result


def _train(cfg: TrainConfig, task: Any, info: D.DistInfo, return_model: bool, stop: StopSignals,
           progress_bar: dict[str, Any] | None = None) -> dict[str, Any]:
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    # cfg was built by the caller (Python code or the command line), so a "module:factory" task is trusted
    # here; file sources (YAML, a checkpoint's config.json) are screened where they are read.
    task = task if task is not None else build_task(cfg.task, allow_import=True, **cfg.task_options)
    _check_task(task, cfg)
    train_set = task.dataset("train")
    plan = GlobalBatches(len(train_set), cfg.batch_size, cfg.seed)
    micro, accum = accumulation(cfg.batch_size, cfg.grad_accum, info.world_size)
    writes = info.is_main and cfg.out_dir is not None
    ckpt_root = os.path.join(cfg.out_dir, "checkpoints") if cfg.out_dir else None
    resume = _resume_from(cfg, info)
    folder = resume[0] if resume else None
    if resume is not None:  # before anything is allocated
        _check_resume_config(resume[1][2].get("train_config", {}), cfg, folder)

    model = SessaLM(cfg.model).to(info.device)  # same seed on every rank: identical initial weights
    n_params = model.num_parameters()
    model = D.wrap_model(model, info, cfg.fsdp)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.adam_eps)
    sched = WarmupCosine(optimizer, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    logger = RunLogger(cfg.out_dir, writes, cfg.tensorboard)
    start = 0
    if resume is not None:
        weights, optim_state, state = resume[1]
        restore_state(model, optimizer, weights, optim_state, folder, info)
        sched.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
        start = int(state["step"])
        logger.history, logger.evals = list(state.get("history", [])), list(state.get("evals", []))
        logger.window.load_state_dict(state.get("log_window", {}))  # the partial window before the checkpoint
        del weights, optim_state, resume
    if writes:
        from sessa.utils.io import atomic_write_json

        os.makedirs(ckpt_root, exist_ok=True)
        atomic_write_json(os.path.join(cfg.out_dir, "train_config.json"), cfg.to_dict())

    end = cfg.stop_at or cfg.steps
    autocast = torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    eval_kw = dict(batch_size=cfg.eval_batch_size or cfg.batch_size, micro_batch_size=micro, precision=cfg.precision,
                   info=info)
    progress = Progress(cfg.progress and info.is_main, end, start, **(progress_bar or {}))
    last_ckpt, train_time, train_tokens = folder, 0.0, 0
    every = cfg.checkpoint_interval
    model.train()
    try:
        data = step_batches(task, train_set, plan, start, end, info.rank, info.world_size, micro, cfg.num_workers)
        t0 = time.perf_counter()  # step time includes building the batch (tokens/s is end to end)
        for step, batches in zip(range(start, end), data, strict=True):
            lr = sched.apply()
            # the stop flag rides on this all-reduce: every rank learns of a signal any rank received
            counts = torch.tensor([sum(_scored(b["labels"]) for b in batches),
                                   sum(b["input_ids"].numel() for b in batches), float(stop.requested)],
                                  dtype=torch.float64, device=info.device)
            n_scored, n_tokens, n_stop = (int(x) for x in D.all_reduce_sum(counts, info).tolist())
            if n_scored == 0:
                raise ValueError(f"step {step + 1}: the global batch has no scored positions (all labels ignored)")
            loss_sum = torch.zeros((), dtype=torch.float32, device=info.device)
            for i, b in enumerate(batches):
                ids, labels = b["input_ids"].to(info.device), b["labels"].to(info.device)
                with D.grad_sync(model, i == len(batches) - 1):
                    with autocast:
                        logits = model(ids).logits
                    part = lm_loss(logits, labels, reduction="sum")
                    (part * (info.world_size / n_scored)).backward()
                loss_sum += part.detach()
            loss_t = D.all_reduce_sum(loss_sum, info) / n_scored
            D.sync_replicated_grads(model, info)
            gnorm = D.clip_grad_norm(model, cfg.grad_clip or math.inf, info)
            loss, grad_norm = (float(x) for x in torch.stack([loss_t.float(), gnorm.float()]).tolist())
            if cfg.check_finite and not (math.isfinite(loss) and math.isfinite(grad_norm)):
                optimizer.zero_grad(set_to_none=True)
                raise NonFiniteLossError(
                    f"step {step + 1}: loss = {loss}, grad norm = {grad_norm} (not finite); stopped before the "
                    f"update, no checkpoint written. Try a lower lr (now {lr:.3g}), precision: fp32, or grad_clip."
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sched.step()
            done = step + 1
            dt = time.perf_counter() - t0
            t0 += dt
            train_time, train_tokens = train_time + dt, train_tokens + n_tokens
            logger.window.add(loss, dt, n_tokens)
            progress.update(loss, n_tokens / max(dt, 1e-9), lr)
            if done % cfg.log_every == 0 or done == end:
                logger.log_train(logger.window.row(done, lr, grad_norm))
            if cfg.eval_every and done % cfg.eval_every == 0 and done != end:
                metrics = evaluate(model, task, cfg.eval_split, cfg.eval_batches, **eval_kw)
                logger.log_eval({"step": done, "split": cfg.eval_split, **metrics})
                progress.write(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            saved = bool(ckpt_root) and ((every and done % every == 0) or done == end)
            if saved:
                last_ckpt = save_state(ckpt_root, done, model, optimizer, sched, plan, logger, cfg, info)
                logger.flush() if writes else None
            if (n_stop > 0 if info.enabled else stop.requested) and done < end:  # same step on every rank
                if ckpt_root and not saved:
                    last_ckpt = save_state(ckpt_root, done, model, optimizer, sched, plan, logger, cfg, info)
                raise TrainingStopped(stop.signum or signal.SIGTERM, done, last_ckpt if writes else None)
            t0 = time.perf_counter()  # evaluation and checkpoint time is not training time
        final = evaluate(model, task, cfg.eval_split, cfg.eval_batches, **eval_kw)
        logger.log_eval({"step": end, "split": cfg.eval_split, "final": True, **final})
    finally:
        progress.close()
        logger.close()
    out = {"final": final, "history": logger.history, "evals": logger.evals, "params": n_params,
           "tokens_per_s": train_tokens / train_time if train_time else 0.0,
           "wall_time_s": time.perf_counter() - t_start, "out_dir": cfg.out_dir, "steps": end,
           "checkpoint": last_ckpt, "world_size": info.world_size, "grad_accum": accum, "micro_batch_size": micro}
    if return_model:
        out["model"] = D.unwrap(model)
    return out
