"""Language models: the core SessaLM (torch only) and, in sessa.models.hf, the Hugging Face classes."""

from sessa.models.cache import SessaCache
from sessa.models.config import SessaConfig
from sessa.models.lm import LMOutput, SessaLM

__all__ = ["SessaConfig", "SessaLM", "LMOutput", "SessaCache"]
