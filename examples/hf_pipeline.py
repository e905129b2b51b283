"""Hugging Face round trip: build with AutoModelForCausalLM, save as safetensors, reload, run a pipeline."""

import sys
import tempfile

from transformers import AutoModelForCausalLM, pipeline

import sessa  # noqa: F401  (registers model type "sessa" with the Auto classes)
from sessa.models.hf import SessaConfig
from sessa.tokenization import byte_tokenizer

tok = byte_tokenizer()
config = SessaConfig(vocab_size=len(tok), d_model=64, n_layers=2, n_heads=2,
                     bos_token_id=256, eos_token_id=256, pad_token_id=257)
model = AutoModelForCausalLM.from_config(config)
with tempfile.TemporaryDirectory() as folder:
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    generator = pipeline("text-generation", model=reloaded, tokenizer=tok)
    text = generator("Sessa ", max_new_tokens=12, do_sample=False)[0]["generated_text"]
print(type(reloaded).__name__, repr(text))
sys.exit(0 if text.startswith("Sessa ") else 1)
