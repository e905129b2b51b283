"""`sessa train --mixer NAME` for the baselines beyond the paper's: a few steps, `sessa eval`, and the
checkpoint through the Hugging Face classes (save_pretrained / from_pretrained keep the logits)."""

import json

import pytest
import torch

from sessa.cli import main
from sessa.train.checkpoint import load_checkpoint

SOUP = ["--task", "symbolsoup", "--set", "model.vocab_size=46", "--set", "model.max_seq_len=64",
        "--set", "task_options={min_len: 40, max_len: 60, n_train: 40, n_validation: 20, n_test: 20, "
        "tokenization: compact}"]


@pytest.mark.parametrize("mixer", ["gated_deltanet", "llama"])
def test_train_eval_and_load_through_hf(mixer, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *SOUP, "--mixer", mixer, "--d-model", "16", "--n-layers", "1", "--steps", "3",
            "--batch-size", "4", "--grad-accum", "1", "--eval-batches", "1", "--no-progress", "--out-dir", str(out),
            "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 3
    assert main(["eval", "--checkpoint", str(out), "--json", "--batch-size", "4", "--batches", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] > 0

    from sessa.models.hf import SessaForCausalLM, to_hf

    core = load_checkpoint(out)
    assert core.config.mixer == mixer
    ids = torch.randint(0, 46, (2, 12))
    hf = to_hf(core)
    hf.save_pretrained(tmp_path / "hf")
    back = SessaForCausalLM.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        assert torch.equal(back(ids, use_cache=False).logits, core(ids).logits)
