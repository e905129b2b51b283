"""`sessa bench --out`: each finished model/seed is saved at once; a rerun reads it back (resume); a folder
holding runs with other settings is refused, never overwritten; the table explains itself."""

import json
import os

import pytest
import yaml

import sessa.compare.harness as harness
from sessa.cli import main
from sessa.compare.harness import run_bench
from sessa.compare.report import format_table
from sessa.compare.runs import run_path
from sessa.compare.study import run_study

TINY = {
    "model": {"d_model": 16, "n_layers": 1, "n_heads": 1, "impl": "naive"},
    "budget": {"steps": 3, "batch_size": 4, "lr": 1e-2, "warmup_steps": 1, "min_lr_ratio": 0.1,
               "weight_decay": 0.0, "grad_clip": 1.0, "eval_batches": 1, "eval_batch_size": 20},
    "tasks": {"symbolsoup": {"min_len": 40, "max_len": 60, "n_train": 40, "n_validation": 20, "n_test": 20}},
    "seeds": [0, 1],
}
MODELS = ["sessa", "attention"]


@pytest.fixture()
def preset(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)


def _bench(preset, out, **kw):
    return run_bench("symbolsoup", preset, models=MODELS, tolerance=0.2, threads=1, log=None, out_dir=str(out), **kw)


def test_interrupted_study_resumes_where_it_stopped(preset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real, calls = harness.run_one, []

    def stop_after_two(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append((args[0]["mixer"], args[4]))
        return real(*args, **kw)

    monkeypatch.setattr(harness, "run_one", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _bench(preset, out)
    # the two finished runs are on disk, with a partial table that says so
    # seed-major order: every model gets seed 0 before any gets seed 1
    assert sorted(os.listdir(out / "runs")) == ["attention-seed0.json", "sessa-seed0.json"]
    partial = json.loads((out / "results.json").read_text())
    assert partial["complete"] is False and list(partial["models"]) == MODELS
    assert "unfinished" in (out / "results.md").read_text()
    # the rerun trains only the two missing runs and reads the others back unchanged
    calls.clear()
    monkeypatch.setattr(harness, "run_one", lambda *a, **kw: (calls.append((a[0]["mixer"], a[4])), real(*a, **kw))[1])
    done = _bench(preset, out)
    assert calls == [("sessa", 1), ("attention", 1)]
    assert done["complete"] is True and set(done["models"]) == set(MODELS)
    assert done["models"]["sessa"]["runs"][0] == json.loads((out / "runs" / "sessa-seed0.json").read_text())["run"]
    # a third run trains nothing
    calls.clear()
    again = _bench(preset, out)
    assert calls == []
    assert again["models"] == done["models"]


def test_other_settings_are_refused_and_kept(preset, tmp_path):
    out = tmp_path / "out"
    run_bench("symbolsoup", preset, models=["sessa"], seeds=[0], threads=1, log=None, out_dir=str(out))
    before = (out / "runs" / "sessa-seed0.json").read_bytes()
    with pytest.raises(ValueError, match=r"other settings: budget\.steps \(3 there, 2 now\)"):
        run_bench("symbolsoup", preset, models=["sessa"], seeds=[0], steps=2, threads=1, log=None,
                  out_dir=str(out))
    assert (out / "runs" / "sessa-seed0.json").read_bytes() == before
    with open(run_path(out, "sessa", 0), "w") as f:
        f.write("[1, 2]")
    with pytest.raises(ValueError, match="not a sessa bench run file"):
        run_bench("symbolsoup", preset, models=["sessa"], seeds=[0], threads=1, log=None, out_dir=str(out))


def test_table_explains_itself(preset, tmp_path):
    one = run_bench("symbolsoup", preset, models=MODELS + ["sessa-nofb"], seeds=[0], tolerance=0.2, threads=1,
                    log=None)
    table = format_table(one)
    assert "1 seed: no spread" in table
    assert " ± " not in table.split("\n")[2].split("|")[2]  # the accuracy cell: no fake ± 0.0000
    assert "chance level**: 0.0500" in table  # 20 balanced classes
    assert "on 20 test examples" in table  # what was actually scored
    assert "**sessa-nofb**: Sessa without feedback" in table and "**attention**: causal softmax" in table
    assert "size match**: reference" in table
    assert "paper**: the paper's value (mean ± std over 2 seeds) at ~125M-350M params" in table
    run = one["models"]["sessa"]["runs"][0]["test"]
    assert run["examples"] == 20 and 0.0 < run["majority_accuracy"] <= 1.0
    two = run_bench("symbolsoup", preset, models=MODELS, seeds=[0, 1], tolerance=0.2, threads=1, log=None)
    table = format_table(two)
    assert "mean ± std, 2 seeds" in table and "Δ vs sessa (p)" in table
    row = next(line for line in table.splitlines() if line.startswith("| attention |"))
    assert " ± " in row and "(" in row  # a spread and a p-value


def test_progress_bar_per_run(preset, capsys):
    run_bench("symbolsoup", preset, models=["sessa"], seeds=[0], threads=1, log=None, progress=True)
    err = capsys.readouterr().err
    assert "sessa seed 0" in err and "/3 [" in err  # a bar over the 3 steps, labelled with the run


def test_study_writes_tables_and_resumes(preset, tmp_path, monkeypatch):
    out = tmp_path / "study"
    res = run_study(str(out), preset, parts=["symbolsoup"], models=MODELS, seeds=[0], progress=False, log=None)
    assert res["parts"]["symbolsoup"]["complete"] is True
    md = (out / "results.md").read_text()
    assert "## SymbolSoup (Table 1)" in md and "| sessa |" in md and "Wall time" in md
    assert "| model \\ lag |" in md and (out / "extrapolation_symbolsoup.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(harness, "run_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = run_study(str(out), preset, parts=["symbolsoup"], models=MODELS, seeds=[0], progress=False, log=None)
    assert again["parts"]["symbolsoup"]["models"] == res["parts"]["symbolsoup"]["models"]
    with pytest.raises(ValueError, match="parts"):
        run_study(str(out), preset, parts=["tables"], log=None)


def test_cli_paper_options(capsys):
    assert main(["bench", "paper", "--parts", "nope"]) == 2
    assert "parts" in capsys.readouterr().err
    assert main(["bench", "paper", "--steps", "5"]) == 2
    assert "--steps is not used" in capsys.readouterr().err
    assert main(["bench", "symbolsoup", "--parts", "lm"]) == 2
    assert "--parts" in capsys.readouterr().err


def test_report_only_trains_nothing_and_marks_missing_seeds(preset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_bench("symbolsoup", preset, models=["sessa"], seeds=[0], threads=1, log=None, out_dir=str(out))
    monkeypatch.setattr(harness, "run_one", lambda *a, **k: pytest.fail("report-only trained a model"))
    res = run_bench("symbolsoup", preset, models=["sessa", "attention"], seeds=[0, 1], threads=1, log=None,
                    out_dir=str(out), train=False)
    assert list(res["models"]) == ["sessa"] and res["complete"] is False
    assert json.loads((out / "results.json").read_text())["seeds"] == [0, 1]  # the report is written too
    table = format_table(res)
    assert "1 seed: no spread" in table and "unfinished" in table  # the seeds finished, and that more were asked
    with pytest.raises(ValueError, match="out_dir"):
        run_bench("symbolsoup", preset, models=["sessa"], seeds=[0], threads=1, log=None, train=False)


def test_cli_stop_says_how_to_resume(preset, tmp_path, monkeypatch, capsys):
    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "run_one", stopped)
    out = tmp_path / "out"
    assert main(["bench", "symbolsoup", "--preset", preset, "--models", "sessa", "--seeds", "0", "--jobs", "1",
                 "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "stopped" in err and str(out) in err and "run the same command again to resume" in err
