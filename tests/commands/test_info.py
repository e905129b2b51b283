"""`sessa info` from flags, a config file and a checkpoint, without allocating the model."""

import json

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
