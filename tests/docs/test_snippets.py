"""Every code example of README.md and docs/*.md runs as written.

Python blocks run whole, each in a fresh process (forked from one that has imported torch only: see
forkserver.py); shell blocks run one command at a time through bash, with
`sessa` = `python -m sessa` and `torchrun` = `python -m torch.distributed.run` of this checkout. Each runs
in its own temporary folder holding a copy of configs/. What an example takes from its surroundings (a
checkpoint an earlier example trained, the tensors the prose names) is declared below, never guessed: a
checkpoint is built once per session by the docs' own command (fewer steps) and copied in. An example that
cannot run here is listed in NOT_RUN with the reason; one that is neither run nor listed fails the suite.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from snippets import (
    PYTHON_LANGS,
    ROOT,
    RUNNABLE_PROGRAMS,
    SHELL_LANGS,
    TEXT_LANGS,
    Unit,
    all_blocks,
    looks_like_commands,
    units,
)

BENCH = "bench: minutes per model on 2 cores; the harness, its resume and the CLI run in tests/compare on tiny presets"
GPU8 = "8 GPUs (torchrun --nproc-per-node 8, 125M/350M presets)"
MULTINODE = "two machines (a rendezvous host)"
SIGNATURES = "API signature listing, not code"

# Keys are patterns (`*` = anything) on unit ids (`FILE[N] first line` or `FILE[N].M command`).
NOT_RUN: dict[str, str] = {
    "README.md[1].1 make bench": "make: the README's main job (set-up + a 4-model bench, ~5 min), timed from a "
                                 "fresh clone for the README",
    "README.md[1].2 make test": "make: the test command itself (CI runs it; set-up + the fast suite, which "
                                "includes this test)",
    "README.md[6].* sessa bench *": BENCH,
    "README.md[6].* sessa train --task lm *": "timed separately",
    "README.md[7].*": GPU8 + "; the two-machine lines also need " + MULTINODE,
    # one entry per block, so that a real example added to CONTRACTS.md is not swept in
    "docs/CONTRACTS.md[1] SessaLM.forward(*": SIGNATURES,
    "docs/CONTRACTS.md[2] byte_tokenizer() -> *": SIGNATURES,
    "docs/CONTRACTS.md[3] SessaConfig(**core_fields, *": SIGNATURES,
    "docs/CONTRACTS.md[4] task = build_task(name, **options) *": SIGNATURES,
    "docs/CONTRACTS.md[5] TrainConfig(model: SessaConfig, *": SIGNATURES,
    "docs/bench.md[*].* sessa bench *": BENCH,
    "docs/bench.md[*] class MyMixer(nn.Module):": "a skeleton (`...`); tests/compare/test_new_mixer.py adds a "
                                                  "complete mixer exactly this way",
    "docs/tasks.md[5] # mytasks.py": "a skeleton (`...`); the examples naming mytasks:build run with it "
                                     "completed (_MYTASKS below)",
    "docs/tasks.md[6].1 sessa train --task mytasks:build *": "long: 6.7 min on 2 cores (the default "
                                                             "2.2M-parameter model at seq_len 256)",
    "docs/tasks.md[6].3 sessa bench mytasks:build --preset laptop": BENCH,
    "docs/training.md[2].2 sessa train --task lm *": "long: 7.7 min on 2 cores",
    "docs/training.md[6].*": GPU8,
    "docs/training.md[7].*": MULTINODE,
}

# Checkpoints an example reads: built once per session in a scratch folder by these commands (the docs'
# own, with fewer steps where only a loadable checkpoint matters), then the folder is copied in.
ARTIFACTS: dict[str, tuple[list[str], str]] = {
    "tiny": (["sessa train --config configs/tiny_cpu.yaml"], "runs/tiny_cpu"),
    "lm": (["sessa train --task lm --set model.vocab_size=258 --steps 2 --out-dir runs/lm"], "runs/lm"),
}
# unit pattern -> [(artifact, where the example expects it)]
NEEDS: dict[str, list[tuple[str, str]]] = {
    "README.md[6].* sessa train --config configs/tiny_cpu.yaml --resume auto": [("tiny", "runs/tiny_cpu")],
    "README.md[6].* sessa generate --checkpoint runs/lm *": [("lm", "runs/lm")],
    "docs/analysis.md[1].3 *": [("tiny", "runs/sym")],
    "docs/inference.md[3].1 *": [("lm", "runs/my_run")],
    "docs/tasks.md[6].2 *": [("mytask", "runs/x")],
    "docs/training.md[1].2 *": [("tiny", "runs/tiny_cpu")],
    "docs/training.md[1].3 *": [("tiny", "runs/tiny_cpu")],
    "docs/training.md[3] *": [("tiny", "runs/tiny_cpu")],
}
ARTIFACTS["mytask"] = (["sessa train --task mytasks:build --task-option seq_len=256 --steps 2 --out-dir runs/x"],
                       "runs/x")

# Files an example names without making them: unit pattern -> {name: text}.
# docs/tasks.md's `mytasks` module, completed: a small MQAR (tests/tasks/mytasks.py is smaller still, too
# small for the default batch of 32).
_MYTASKS = """from sessa.tasks.mqar import MQAR


def build(**options) -> MQAR:
    return MQAR(**{"n_train": 256, "n_validation": 32, "n_test": 32, "num_pairs": 4, **options})
"""
FILES: dict[str, dict[str, str]] = {
    "docs/inference.md[3].2 *": {"my_model.yaml": "vocab_size: 258\nd_model: 64\nn_layers: 2\n"},
    "docs/tasks.md[6].*": {"mytasks.py": _MYTASKS},
    "docs/tasks.md[7] *": {"mytasks.py": _MYTASKS},
    "docs/huggingface.md[1] *": {"corpus.txt": "\n\n".join(
        f"Paragraph {i}: the quick brown fox jumps over the lazy dog, héllo wörld." for i in range(200))},
}
ARTIFACT_FILES = {"mytask": {"mytasks.py": _MYTASKS}}

# Python run before a block: the inputs its prose names (shapes as the text states them).
PRELUDE: dict[str, str] = {
    "README.md[5] *": (
        "import torch, sessa\n"
        "from sessa.layers.compat import SessaLayer as _Theirs\n"
        "torch.save(_Theirs(64, 4, 2, 1024).state_dict(), 'their_layer.pt')\n"
        "x, x_t = torch.randn(2, 16, 64), torch.randn(2, 64)\n"
        "model = sessa.SessaLM(sessa.SessaConfig(vocab_size=258, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2))\n"
    ),
    "docs/fast-path.md[2] *": (
        "import torch\n"
        "q, k, f = torch.randn(2, 300, 2, 16), torch.randn(2, 300, 2, 16), torch.randn(2, 300, 2, 16)\n"
        "gamma = 0.9 * torch.rand(2, 300, 2)\n"
        "k_past, s_past = torch.randn(2, 40, 2, 16), torch.randn(2, 40, 2, 16)\n"
    ),
    "docs/huggingface.md[2] *": (
        "import torch\ninput_ids = torch.randint(0, 256, (2, 24))\nmask = torch.ones_like(input_ids)\n"
    ),
    "docs/huggingface.md[3] *": (
        "import sessa\ncore_lm = sessa.SessaLM(sessa.SessaConfig(vocab_size=258, d_model=64, n_layers=2))\n"
    ),
    "docs/inference.md[1] *": (
        "import torch\nprompt_ids, more_ids = torch.randint(0, 258, (2, 20)), torch.randint(0, 258, (2, 7))\n"
        "next_id = torch.randint(0, 258, (2,))\n"
    ),
    "docs/inference.md[2] *": (
        "import torch\nfrom sessa import SessaConfig, SessaLM\n"
        "model = SessaLM(SessaConfig(vocab_size=258, d_model=64, n_layers=2)).eval()\n"
        "input_ids = torch.randint(0, 256, (2, 8))\n"
    ),
}
# Python blocks that continue an earlier block of the same file (its code runs first).
CONTINUES: dict[str, str] = {"README.md[4] *": "README.md[3] *"}
# Python run after a block: the values its comments promise.
CHECK: dict[str, str] = {
    "README.md[3] *": "assert y.shape == (2, 1024, 256) and out.logits.shape == (2, 128, 258)\n"
                      "assert s.shape == (1, 4096, 1, 64)\n",
    "README.md[4] *": ("assert new_ids.shape == (1, 32)\n"
                      "import os; assert os.path.isfile('my-sessa/model.safetensors')\n"),
    "README.md[5] *": "assert y.shape == (2, 16, 64) and y_t.shape[-1] == 64 and cache['t'] == 17\n",
    "docs/huggingface.md[1] *": "assert tok('héllo')['input_ids'] == [104, 195, 169, 108, 108, 111]\n",
    "docs/huggingface.md[2] *": "assert ids.shape[0] == 2 and out.loss is not None\n",
    "docs/inference.md[1] *": "assert out.logits.shape == (2, 1, 258)\n",
    "docs/inference.md[2] *": "assert res.new_ids.shape == (2, 64) and res.tokens_per_s > 0\n",
    "docs/tasks.md[1] *": "assert (task.vocab_size, task.pad_id, task.metric_names) == (46, 0, ('loss', 'accuracy'))\n"
                          "assert batch['input_ids'].shape[0] == 8 and batch['labels'].shape == "
                          "batch['input_ids'].shape\n",
    "docs/training.md[3] *": "assert 'final' in result and not model.training\n",
}
# Units measured well under ~10 s here; every other unit is marked slow.
FAST: set[str] = {
    "README.md[3] *", "README.md[4] *", "README.md[5] *", "docs/fast-path.md[2] *", "docs/huggingface.md[1] *",
    "docs/huggingface.md[2] *", "docs/huggingface.md[3] *", "docs/inference.md[1] *", "docs/inference.md[2] *",
    "docs/tasks.md[1] *", "docs/tasks.md[7] *",
}
TABLES = {"NOT_RUN": NOT_RUN, "NEEDS": NEEDS, "FILES": FILES, "PRELUDE": PRELUDE, "CONTINUES": CONTINUES,
          "CHECK": CHECK, "FAST": dict.fromkeys(FAST)}
TIMEOUT_S = 900
HERE = os.path.dirname(os.path.abspath(__file__))

BLOCKS = all_blocks()
UNITS = units(BLOCKS)


def _glob(unit_id: str, pattern: str) -> bool:
    """`*` matches anything; every other character, brackets included, only itself."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), unit_id, flags=re.S) is not None


def _match(table: dict | set, unit_id: str) -> list:
    """The values (for a set: the keys) of the entries whose pattern matches the unit."""
    if isinstance(table, set):
        return [k for k in table if _glob(unit_id, k)]
    return [v for k, v in table.items() if _glob(unit_id, k)]


def _one(table: dict, unit_id: str):
    hits = _match(table, unit_id)
    assert len(hits) <= 1, f"{unit_id!r} matches several entries of one table"
    return hits[0] if hits else None


def _cases():
    for u in UNITS:
        if _match(NOT_RUN, u.id):
            continue
        marks = () if _match(FAST, u.id) else (pytest.mark.slow,)
        yield pytest.param(u, id=u.id[:110], marks=marks)


def _env(bin_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "SESSA_"))}
    env.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               PATH=bin_dir + os.pathsep + env.get("PATH", ""), PYTHONDONTWRITEBYTECODE="1")
    return env


def _shims(folder: str) -> str:
    """`sessa`, `python` and `torchrun` as the docs use them, all on this interpreter and checkout."""
    os.makedirs(folder, exist_ok=True)
    py = shlex.quote(sys.executable)
    for name, target in (("sessa", f"{py} -m sessa"), ("python", py),
                         ("torchrun", f"{py} -m torch.distributed.run")):
        path = os.path.join(folder, name)
        with open(path, "w") as fh:
            fh.write(f'#!/bin/sh\nexec {target} "$@"\n')
        os.chmod(path, 0o755)
    return folder


def _workdir(path: str, files: dict[str, str] | None = None) -> None:
    shutil.copytree(os.path.join(ROOT, "configs"), os.path.join(path, "configs"))
    for name, text in (files or {}).items():
        with open(os.path.join(path, name), "w", encoding="utf-8") as fh:
            fh.write(text)


def _run(cmd: list[str], cwd: str, env: dict) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (f"exit {done.returncode}: {cmd[-1][-300:]}\n--- stdout\n{done.stdout[-3000:]}"
                                  f"\n--- stderr\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def run_python(tmp_path_factory):
    """run_python(script, cwd): the script in a process forked from one that imported torch
    (tests/docs/forkserver.py: fresh globals, neither sessa nor transformers pre-imported); exit status 0."""
    logs = tmp_path_factory.mktemp("forkserver")
    env = _env(_shims(str(logs / "bin")))
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "forkserver.py")], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(script: str, cwd: str) -> None:
        out, err = os.path.join(cwd, "snippet.stdout"), os.path.join(cwd, "snippet.stderr")
        server.stdin.write(json.dumps({"script": script, "cwd": cwd, "stdout": out, "stderr": err,
                                       "timeout": TIMEOUT_S}) + "\n")
        server.stdin.flush()
        reply = server.stdout.readline()
        assert reply, f"the fork server died (exit {server.poll()})"
        rc = json.loads(reply)["rc"]
        if rc != 0:
            text = [open(p, encoding="utf-8", errors="replace").read() for p in (out, err)]
            pytest.fail(f"exit {rc}\n--- stdout\n{text[0][-3000:]}\n--- stderr\n{text[1][-4000:]}")

    yield run
    server.stdin.close()
    server.wait(timeout=60)


@pytest.fixture(scope="session")
def artifact(tmp_path_factory):
    """artifact(name) -> folder of a checkpoint built once per session by the commands in ARTIFACTS."""
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            cwd = str(tmp_path_factory.mktemp(f"artifact_{name}"))
            _workdir(cwd, ARTIFACT_FILES.get(name))
            env = _env(_shims(os.path.join(cwd, ".bin")))
            commands, out = ARTIFACTS[name]
            for c in commands:
                _run(["bash", "-eo", "pipefail", "-c", c], cwd, env)
            built[name] = os.path.join(cwd, out)
        return built[name]

    return get


@pytest.mark.parametrize("unit", list(_cases()))
def test_doc_example_runs(unit: Unit, tmp_path, artifact, run_python):
    cwd = str(tmp_path / "work")
    os.makedirs(cwd)
    _workdir(cwd, _one(FILES, unit.id))
    for name, dest in _one(NEEDS, unit.id) or []:
        shutil.copytree(artifact(name), os.path.join(cwd, dest))
    env = _env(_shims(str(tmp_path / "bin")))
    if unit.kind == "python":
        parts = [_one(PRELUDE, unit.id) or ""]
        earlier = _one(CONTINUES, unit.id)
        if earlier:
            parts.append(next(u.code for u in UNITS if _glob(u.id, earlier)))
        parts += [unit.code, _one(CHECK, unit.id) or ""]
        script = os.path.join(cwd, "snippet.py")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write("\n".join(parts) + "\n")
        run_python(script, cwd)
        return
    _run(["bash", "-eo", "pipefail", "-c", unit.code], cwd, env)
    # an example that names an output folder must have written it
    words = shlex.split(unit.code)
    for flag in ("--out", "--out-dir"):
        for i, w in enumerate(words[:-1]):
            if w == flag:
                assert os.listdir(os.path.join(cwd, words[i + 1])), f"{words[i + 1]} is empty after {unit.code!r}"


def test_every_block_is_classified():
    """Each fenced block names a language; each runnable unit is run or listed in NOT_RUN with a reason."""
    problems = []
    for b in BLOCKS:
        if b.lang not in PYTHON_LANGS | SHELL_LANGS | TEXT_LANGS:
            problems.append(f"{b.file}:{b.line}: fence language {b.lang!r}: tag it python, bash or text")
        elif b.lang in TEXT_LANGS and looks_like_commands(b.text):
            problems.append(f"{b.file}:{b.line}: a `text` block holding commands: tag it bash")
    for u in UNITS:
        if u.kind == "shell" and u.program not in RUNNABLE_PROGRAMS and not _match(NOT_RUN, u.id):
            problems.append(f"{u.id!r}: starts {u.program!r}; only {sorted(RUNNABLE_PROGRAMS)} run: list it in NOT_RUN")
    assert not problems, "\n".join(problems)
    assert all(reason.strip() for reason in NOT_RUN.values())
    assert any(True for _ in _cases()), "no docs example is run at all"


def test_every_table_entry_matches_an_example():
    """A NOT_RUN (or other) entry whose example was edited away must go, not linger unmatched."""
    ids = [u.id for u in UNITS]
    stale = [f"{name}: {key!r}" for name, table in TABLES.items() for key in table
             if not any(_glob(i, key) for i in ids)]
    stale += [f"CONTINUES target {v!r}" for v in CONTINUES.values() if not any(_glob(i, v) for i in ids)]
    assert not stale, "entries matching no docs example:\n" + "\n".join(stale)


def test_run_examples_are_not_also_listed_as_not_run():
    both = [u.id for u in UNITS if _match(NOT_RUN, u.id) and any(_match(t, u.id) for t in (NEEDS, PRELUDE, CHECK))]
    assert not both, f"listed in NOT_RUN yet given inputs or checks: {both}"
