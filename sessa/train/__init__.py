"""Training: `train(cfg)` (AdamW, warmup+cosine, accumulation, bf16, eval, atomic checkpoints, exact resume,
DDP/FSDP under torchrun), `evaluate`, and `load_checkpoint` for eval/generation."""

from sessa.train.checkpoint import CheckpointError, load_checkpoint, save_model
from sessa.train.config import TrainConfig
from sessa.train.evaluate import evaluate
from sessa.train.loop import NonFiniteLossError, train
from sessa.train.outdir import OutDirError
from sessa.train.preempt import TrainingStopped

__all__ = ["TrainConfig", "train", "evaluate", "load_checkpoint", "save_model", "CheckpointError",
           "NonFiniteLossError", "TrainingStopped", "OutDirError"]
