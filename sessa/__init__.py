"""sessa: Selective State Space Attention (arXiv 2604.18580) — layer, fast ops, LM, tools.

`sessa.ops` and `sessa.layers` need torch only. Importing `sessa` also registers the Hugging Face
classes with transformers' Auto* factories when transformers is installed.
"""

from sessa.layers import GatedBlock, SessaLayer, SessaMixer, convert_reference_state_dict
from sessa.models import LMOutput, SessaConfig, SessaLM
from sessa.ops import feedback_solve

__version__ = "0.1.0"

# Register model_type "sessa" with transformers' Auto* classes; optional, so sessa.ops / sessa.layers /
# the core LM keep working with torch alone. Only a missing transformers is tolerated: a broken
# integration must fail loudly, not disappear.
try:
    import transformers  # noqa: F401
except ImportError:
    pass
else:
    import sessa.models.hf  # noqa: F401  (registers on import)

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
