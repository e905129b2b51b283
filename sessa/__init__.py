"""sessa: Selective State Space Attention (arXiv 2604.18580) — layer, fast ops, LM, tools.

`sessa.ops` and `sessa.layers` need torch only. `import sessa` itself imports nothing heavy: the public
names below load on first use (PEP 562), so `sessa --help` does not pay for torch. The Hugging Face
classes are registered with transformers' Auto* factories as soon as transformers is imported, before or
after `import sessa` (see `_register_with_transformers`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it, imported on first attribute access
_LAZY: dict[str, str] = {
    "feedback_solve": "sessa.ops",
    "GatedBlock": "sessa.layers",
    "SessaMixer": "sessa.layers",
    "SessaLayer": "sessa.layers",
    "convert_reference_state_dict": "sessa.layers",
    "SessaConfig": "sessa.models",
    "SessaLM": "sessa.models",
    "LMOutput": "sessa.models",
}
# sub-packages reachable as attributes (`import sessa; sessa.ops.feedback_solve`), imported on first use
_SUBMODULES = ("analysis", "commands", "compare", "generation", "layers", "models", "ops", "tasks", "tokenization",
               "train", "utils")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"sessa.{name}")
    else:
        raise AttributeError(f"module 'sessa' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


class _TransformersHook:
    """One-shot meta-path finder: when `transformers` is imported, run `callback` right after its
    package __init__ has executed (the import statement then returns a registered transformers).

    It asks the other finders for the real spec and wraps only that spec's loader instance's exec_module,
    so the module, its loader type and its resources are transformers' own. It leaves sys.meta_path once
    transformers has been executed (not when merely looked up: `importlib.util.find_spec("transformers")`
    also lands here and is answered without side effects but a wrapped, possibly unused, loader).
    """

    def __init__(self, callback: Any) -> None:
        self.callback = callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "transformers":
            return None
        for finder in [f for f in sys.meta_path if f is not self]:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None  # not installed: the import fails as usual
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            del loader.exec_module  # back to the class's method
            self.uninstall()
            self.callback()

        loader.exec_module = exec_module
        return spec

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def _register() -> None:
    import sessa.models.hf  # noqa: F401  (registers on import)


def _register_with_transformers() -> None:
    """Register the HF classes now if transformers is already imported (the user paid for torch already),
    else when it is. A broken integration raises loudly rather than disappearing."""
    if sys.modules.get("transformers") is not None:  # None: imports of it are blocked (treated as absent)
        _register()
    elif not any(isinstance(f, _TransformersHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TransformersHook(_register))


_register_with_transformers()

__all__ = [
    "feedback_solve",
    "GatedBlock",
    "SessaMixer",
    "SessaLayer",
    "convert_reference_state_dict",
    "SessaConfig",
    "SessaLM",
    "LMOutput",
    "__version__",
]
