"""`sessa bench`: a test-size run of every model type, its outputs, presets and argument checks."""

import json
import os

import pytest
import yaml

from sessa.cli import main
from sessa.compare.harness import run_bench
from sessa.compare.presets import PRESETS, get_preset, model_names
from sessa.compare.report import format_table, write_outputs
from sessa.layers.mixers import MIXERS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {
    "model": {"d_model": 24, "n_layers": 1, "n_heads": 1, "impl": "naive"},
    "budget": {"steps": 30, "batch_size": 8, "lr": 1e-2, "warmup_steps": 3, "min_lr_ratio": 0.1,
               "weight_decay": 0.0, "grad_clip": 1.0, "eval_batches": 1, "eval_batch_size": 20},
    "tasks": {"symbolsoup": {"min_len": 40, "max_len": 60, "n_train": 200, "n_validation": 20, "n_test": 20}},
    "seeds": [0],
}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return run_bench("symbolsoup", str(path), tolerance=0.1, threads=1, log=None)


def test_every_model_type_decreases_its_loss(tiny_results):
    assert list(tiny_results["models"]) == list(model_names())
    for name, m in tiny_results["models"].items():
        run = m["runs"][0]
        assert run["steps_done"] == 30, name
        assert run["last_loss"] < run["first_loss"] - 0.1, (name, run["first_loss"], run["last_loss"])
        assert 0.0 <= m["summary"]["accuracy"]["mean"] <= 1.0
        assert m["params"] > 0 and run["tokens_per_s"] > 0 and run["wall_time_s"] > 0


def test_models_are_matched_and_share_the_budget(tiny_results):
    models = tiny_results["models"]
    target = models["sessa"]["params"]
    for name in (n for n in MIXERS if n != "sessa"):
        assert abs(models[name]["params"] / target - 1) <= 0.1
        assert models[name]["match"]["params"] == models[name]["params"]
    assert models["sessa-nofb"]["config"]["feedback"] is False
    assert models["sessa-nofb"]["config"]["d_model"] == models["sessa"]["config"]["d_model"]
    assert {m["config"]["n_layers"] for m in models.values()} == {1}


def test_outputs_are_valid_json_png_and_table(tiny_results, tmp_path):
    paths = write_outputs(tiny_results, tmp_path / "out")
    with open(paths["json"]) as f:
        data = json.load(f)
    assert data["task"] == "symbolsoup" and set(data["models"]) == set(model_names())
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = format_table(tiny_results)
    for name in model_names():
        assert f"| {name} |" in table
    assert not [p for p in os.listdir(tmp_path / "out") if p.startswith(".tmp-")]  # no temp files left


@pytest.mark.parametrize(
    "kwargs, needle",
    [({"models": ["gpt"]}, "models"), ({"models": []}, "models"), ({"seeds": [-1]}, "seeds"),
     ({"seeds": [0, 0]}, "seeds"), ({"steps": 0}, "steps"), ({"threads": 0}, "threads"),
     ({"jobs": 0}, "jobs"), ({"tolerance": 1.5}, "tolerance")],
)
def test_bad_options_raise_naming_them(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        run_bench("symbolsoup", "laptop", log=None, **kwargs)


def test_bad_task_and_preset():
    with pytest.raises(ValueError, match="task"):
        run_bench("nope", log=None)
    with pytest.raises(ValueError, match="preset"):
        get_preset("huge")
    with pytest.raises(FileNotFoundError, match="preset"):
        get_preset("/nonexistent/p.yaml")


def test_cli_reports_bad_option(capsys):
    assert main(["bench", "symbolsoup", "--models", "sessa,gpt"]) == 2
    assert "--models" in capsys.readouterr().err
    assert main(["bench", "symbolsoup", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_config_files_mirror_presets():
    for name, fname in (("laptop", "bench_laptop.yaml"), ("paper", "bench_paper_125m.yaml"),
                        ("paper-350m", "bench_paper_350m.yaml")):
        assert get_preset(os.path.join(ROOT, "configs", fname)) == PRESETS[name]


def test_symbolsoup_text_preset_builds_its_task():
    """configs/bench_symbolsoup_text.yaml: the laptop preset's SymbolSoup data with train_on_text, two blocks."""
    from sessa.tasks import build_task

    preset = get_preset(os.path.join(ROOT, "configs", "bench_symbolsoup_text.yaml"))
    opts = preset["tasks"]["symbolsoup"]
    assert opts == {**PRESETS["laptop"]["tasks"]["symbolsoup"], "train_on_text": True}
    assert preset["model"]["n_layers"] == 2 and "per_task" not in preset
    assert build_task("symbolsoup", **opts).options["train_on_text"] is True


@pytest.mark.slow  # spawns two fresh interpreters (torch + transformers imports): ~30-60 s on a busy machine
def test_parallel_jobs_give_the_same_runs(tmp_path):
    """--jobs 2 (one process per model) trains exactly what the in-process path trains."""
    path = tmp_path / "tiny.yaml"
    small = {**TINY, "budget": {**TINY["budget"], "steps": 4}}
    path.write_text(yaml.safe_dump(small))
    kw = dict(models=["sessa", "attention"], tolerance=0.1, threads=1, log=None)
    seq = run_bench("symbolsoup", str(path), jobs=1, **kw)
    par = run_bench("symbolsoup", str(path), jobs=2, **kw)
    for name in ("sessa", "attention"):
        a, b = seq["models"][name]["runs"][0], par["models"][name]["runs"][0]
        assert a["loss_history"] == pytest.approx(b["loss_history"], rel=1e-5)
        assert a["test"]["accuracy"] == b["test"]["accuracy"]
