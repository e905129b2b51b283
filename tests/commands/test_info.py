"""`sessa info` from flags, a config file and a checkpoint, without allocating the model."""

import json

import pytest
import torch
import yaml

from sessa.cli import main
from sessa.models import SessaConfig, SessaLM
from sessa.train.checkpoint import save_model


def _info(capsys, *argv) -> dict:
    assert main(["info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_counts_match_a_real_model(tmp_path, capsys):
    cfg = SessaConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2)
    model = SessaLM(cfg)
    save_model(model, tmp_path / "m")
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({"model": cfg.to_dict(), "steps": 3}))
    for argv in (["--checkpoint", str(tmp_path / "m")], ["--config", str(tmp_path / "train.yaml")],
                 ["--vocab-size", "40", "--d-model", "16", "--n-layers", "2", "--n-heads", "2"]):
        out = _info(capsys, *argv)
        assert out["parameters"] == model.num_parameters()
        assert out["parameters_without_embeddings"] == model.num_parameters(exclude_embeddings=True)
        assert out["config"]["d_model"] == 16


def test_info_on_a_huge_config_allocates_nothing(capsys):
    out = _info(capsys, "--d-model", "8192", "--n-layers", "96", "--vocab-size", "50257")
    assert out["parameters"] > 10**10


def test_info_errors_are_one_line(tmp_path, capsys):
    assert main(["info", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["info", "--d-model", "0"]) == 2
    assert "d_model" in capsys.readouterr().err


def test_cli_devices_and_tokenizers_fail_clearly(tmp_path, capsys):
    from sessa.cli import main as cli

    with pytest.raises(SystemExit) as exc:  # argparse's usage error: one line, status 2
        cli(["generate", "--random-init", "--prompt", "x", "--device", "bogus"])
    assert exc.value.code == 2 and "--device must be cpu, cuda or cuda:N, got 'bogus'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            cli(["eval", "--checkpoint", str(tmp_path), "--device", "cuda"])
        assert "no CUDA GPU is visible" in capsys.readouterr().err
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{garbage")
    assert cli(["generate", "--random-init", "--prompt", "x", "--tokenizer", str(tmp_path / "tok")]) == 2
    assert "tokenizer.json: not a readable tokenizer" in capsys.readouterr().err


def test_generate_refuses_a_missing_model():
    from sessa.generation import generate

    with pytest.raises(TypeError, match="model must be a sessa language model"):
        generate(None, torch.zeros(1, 2, dtype=torch.long), max_new_tokens=1)
