"""Weight names of sessa 0.1 checkpoints -> today's, applied on load (the files on disk are never rewritten).

0.1 named the core model's weights `embed.weight`, `layers.N...`, `norm...` and the Hugging Face model's
`model.core.embed.weight`, `model.core.layers.N...`. Both now use the Hugging Face layout
`model.embed_tokens.weight`, `model.layers.N...`, `model.norm...` (and `lm_head.weight`, unchanged).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")

# regex -> replacement, first match wins; also handed to transformers' from_pretrained as key_mapping
V0_1_KEY_MAPPING: dict[str, str] = {
    r"^model\.core\.embed\.": "model.embed_tokens.",
    r"^model\.core\.": "model.",
    r"^embed\.": "model.embed_tokens.",
    r"^(layers|norm)\.": r"model.\1.",
}
_PATTERNS = [(re.compile(k), v) for k, v in V0_1_KEY_MAPPING.items()]


def upgrade_key(key: str) -> str:
    """A 0.1 weight name in today's layout; any other name is returned unchanged."""
    for pattern, replacement in _PATTERNS:
        new, n = pattern.subn(replacement, key, count=1)
        if n:
            return new
    return key


def upgrade_keys(state: Mapping[str, V]) -> dict[str, V]:
    """A state dict (or any mapping keyed by weight name) with 0.1 names renamed; refuses to merge two keys."""
    out: dict[str, V] = {}
    for key, value in state.items():
        new = upgrade_key(key)
        if new in out:
            raise ValueError(f"weight names {key!r} and another one both map to {new!r}: mixed 0.1 and new names")
        out[new] = value
    return out
