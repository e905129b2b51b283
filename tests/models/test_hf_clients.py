"""Hugging Face clients on Sessa models: attn_implementation, PEFT LoRA, accelerate, config defaults, loading."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import sessa  # noqa: F401  (registers the Auto classes)
from sessa.models.hf import SessaConfig, SessaForCausalLM

TINY = dict(vocab_size=258, d_model=32, n_layers=2, n_heads=2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sessa")
    SessaForCausalLM(SessaConfig(**TINY)).save_pretrained(folder)
    return folder


def test_attn_implementation_sdpa_and_eager_accepted(saved):
    x = torch.randint(0, 256, (2, 9))
    ref = AutoModelForCausalLM.from_pretrained(saved).eval()
    assert ref.config._attn_implementation == "sdpa"  # transformers' default, now that it is supported
    with torch.no_grad():
        expected = ref(x).logits
    for impl in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(saved, attn_implementation=impl).eval()
        assert model.config._attn_implementation == impl
        with torch.no_grad():
            torch.testing.assert_close(model(x).logits, expected, rtol=0, atol=0)
        assert AutoModelForCausalLM.from_config(SessaConfig(**TINY), attn_implementation=impl).config \
            ._attn_implementation == impl
    with pytest.raises(ValueError, match="attn_implementation"):
        AutoModelForCausalLM.from_pretrained(saved, attn_implementation="bogus")
