"""Weights saved by sessa 0.1 (tests/fixtures/v0_1, made with the 0.1 code) load and give the same logits."""

import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM

import sessa  # noqa: F401  (registers the Auto classes)
from sessa.models.hf import SessaForCausalLM
from sessa.models.legacy import upgrade_key, upgrade_keys
from sessa.train.checkpoint import load_checkpoint

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "v0_1")
REF = load_file(os.path.join(FIXTURES, "logits.safetensors"))


@pytest.mark.parametrize("old, new", [
    ("embed.weight", "model.embed_tokens.weight"),
    ("layers.3.mixer.q_proj.weight", "model.layers.3.mixer.q_proj.weight"),
    ("norm.bias", "model.norm.bias"),
    ("lm_head.weight", "lm_head.weight"),
    ("model.core.embed.weight", "model.embed_tokens.weight"),
    ("model.core.layers.0.norm.weight", "model.layers.0.norm.weight"),
    ("model.core.norm.weight", "model.norm.weight"),
])
def test_upgrade_key(old, new):
    assert upgrade_key(old) == new
    assert upgrade_key(new) == new  # today's names are left alone


def test_mixed_layouts_are_refused():
    with pytest.raises(ValueError, match="both map to 'model.norm.weight'"):
        upgrade_keys({"norm.weight": 1, "model.norm.weight": 2})


def test_core_training_checkpoint_of_0_1_gives_the_same_logits():
    model = load_checkpoint(os.path.join(FIXTURES, "train_checkpoint"))
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the stored tie is restored
    with torch.no_grad():
        torch.testing.assert_close(model(REF["input_ids"]).logits, REF["core_logits"], rtol=0, atol=1e-6)


def test_hf_folder_of_0_1_gives_the_same_logits_and_saves_the_new_names(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, "hf_model")).eval()
    assert isinstance(model, SessaForCausalLM)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        logits = model(REF["input_ids"]).logits
    torch.testing.assert_close(logits, REF["hf_logits"], rtol=0, atol=1e-6)
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "model.layers.0.mixer.q_proj.weight" in keys
    assert not [k for k in keys if ".core." in k or k.startswith(("embed.", "layers."))]
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(again(REF["input_ids"]).logits, logits)
    # the head-less model reads the 0.1 folder too
    base = AutoModel.from_pretrained(os.path.join(FIXTURES, "hf_model"))
    assert torch.equal(base.embed_tokens.weight, model.model.embed_tokens.weight)


def test_a_copied_0_1_folder_is_not_rewritten(tmp_path):
    """Loading never modifies the files it reads."""
    folder = tmp_path / "old"
    shutil.copytree(os.path.join(FIXTURES, "hf_model"), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    AutoModelForCausalLM.from_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_head_less_folders_of_today_still_load(tmp_path):
    """SessaModel folders (keys layers.N..., norm...) look like 0.1 core names; they must load unchanged."""
    from sessa.models.hf import SessaConfig, SessaModel

    base = SessaModel(SessaConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=2)).eval()
    base.save_pretrained(tmp_path)
    x = REF["input_ids"]
    with torch.no_grad():
        want = base(x).last_hidden_state
        assert torch.equal(SessaModel.from_pretrained(tmp_path).eval()(x).last_hidden_state, want)
        assert torch.equal(SessaForCausalLM.from_pretrained(tmp_path).eval().model(x).last_hidden_state, want)
