"""Small shared utilities (atomic file writes)."""

from sessa.utils.io import atomic_dir, atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_dir"]
