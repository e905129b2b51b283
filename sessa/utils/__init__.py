"""Small shared utilities: the label value that is not scored, key suggestions, atomic file writes."""

import difflib
from collections.abc import Iterable

from sessa.utils.io import atomic_dir, atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text

# labels equal to IGNORE_INDEX are not scored (torch's cross_entropy default, and transformers')
IGNORE_INDEX = -100


def did_you_mean(key: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'd_model'?)' for the nearest allowed name, or '' when none is close."""
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = ["IGNORE_INDEX", "did_you_mean", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_json", "atomic_dir"]
