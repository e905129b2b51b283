"""Pure tensor functions (torch only). Tensors are [B, T, H, D], as in flash-linear-attention."""

from sessa.ops.feedback import DEFAULT_CHUNK_SIZE, feedback_solve

__all__ = ["feedback_solve", "DEFAULT_CHUNK_SIZE"]
