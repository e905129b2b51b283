"""A table of bad command lines: each must fail with one clear line naming the problem, never a traceback and
never a silent success. (The public Python API is fuzzed by tests/test_validation_property.py and the
config tests with hypothesis.)"""

import pytest

from sessa.cli import main

TRAIN = ["train", "--task", "mqar", "--steps", "1", "--batch-size", "2", "--d-model", "16", "--n-layers", "1",
         "--task-option", "n_train=4", "--task-option", "n_validation=2", "--task-option", "n_test=2",
         "--task-option", "seq_len=16", "--task-option", "num_pairs=2", "--no-progress"]
GEN = ["generate", "--random-init", "--prompt", "ab", "--max-new-tokens", "2"]
BENCH = ["bench", "mqar", "--steps", "1", "--jobs", "1"]

CASES: list[tuple[list[str], str]] = []
for flag, values in {
    "--steps": ["0", "-1", "x", "1.5"], "--batch-size": ["0", "-3", "two"], "--lr": ["0", "-1", "nan", "inf", "100"],
    "--warmup-steps": ["-1", "x"], "--d-model": ["0", "-8", "15.5"], "--n-layers": ["0", "1000000"],
    "--n-heads": ["0", "3"], "--precision": ["fp8", "int8"], "--device": ["tpu", "cuda:x"],
    "--mixer": ["nope", "sessaa", ""], "--task": ["nope", "a b:c", "x:y:z", ":f"], "--seed": ["-1"],
    "--grad-accum": ["0", "3"], "--eval-every": ["-1"], "--eval-batches": ["0"], "--ckpt-every": ["-2"],
    "--keep-last": ["0"], "--log-every": ["0"], "--stop-at": ["0", "5"],
}.items():
    CASES += [([*TRAIN, flag, v], flag.lstrip("-").replace("-", "_").split("_")[0]) for v in values]
for item, word in [("stpes=3", "stpes"), ("model.d_modle=3", "d_modle"), ("noequals", "KEY=VALUE"),
                   ("=3", "empty key"), ("model.gamma_max=1.5", "gamma_max"), ("model.gamma_max=-1", "gamma_max"),
                   ("model.gamma_max=1", "gamma_max"), ("model.mixer_options={bogus: 1}", "bogus"),
                   ("eval_split=bogus", "eval_split"), ("betas=[0.9]", "betas"), ("betas=[0.9, 1.0]", "betas"),
                   ("grad_clip=0", "grad_clip"), ("weight_decay=-1", "weight_decay"), ("min_lr_ratio=2", "min_lr"),
                   ("adam_eps=0", "adam_eps"), ("precision=fp16", "precision"), ("resume=3", "resume"),
                   ("model.rope_theta=0", "rope_theta"), ("model.ln_eps=-1", "ln_eps"), ("model.impl=fast", "impl"),
                   ("model.n_kv_heads=3", "n_kv_heads"), ("model.vocab_size=0", "vocab_size"),
                   ("model.chunk_size=0", "chunk_size"), ("model.tie_embeddings=maybe", "tie_embeddings"),
                   ("model.feedback=2", "feedback"), ("model=3", "model"), ("task_options=[1]", "task_options"),
                   ("num_workers=-1", "num_workers"), ("fsdp=yes", "fsdp"), ("out_dir=[1]", "out_dir")]:
    CASES.append(([*TRAIN, "--set", item], word))
for item, word in [("n_trian=3", "n_trian"), ("seq_len=0", "seq_len"), ("num_pairs=-1", "num_pairs"),
                   ("seed=-2", "seed"), ("n_train=x", "n_train")]:
    CASES.append(([*TRAIN, "--task-option", item], word))
CASES += [
    (["train", "--config", "/nonexistent/cfg.yaml"], "does not exist"),
    (["eval", "--checkpoint", "/nonexistent/ckpt"], "does not exist"),
    (["eval", "--checkpoint", "/nonexistent/ckpt", "--device", "tpu"], "--device"),
    (["generate", "--checkpoint", "/nonexistent/ckpt", "--prompt", "x"], "does not exist"),
    ([*GEN, "--config", "/nonexistent.yaml"], "no such file"),
    ([*GEN, "--tokenizer", "/nonexistent-tok"], "tokenizer"),
    (["info", "--config", "/nonexistent.yaml"], "no such file"),
    (["info", "--checkpoint", "/nonexistent"], "does not exist"),
    (["tails", "--out", "/tmp/x", "--checkpoint", "/nonexistent"], "does not exist"),
]
for flag, values, word in [("--max-new-tokens", ["0", "-1", "x"], "max"), ("--top-p", ["0", "1.5", "-0.1"], "top_p"),
                           ("--top-k", ["0", "-3"], "top_k"), ("--temperature", ["0", "-1", "nan"], "temperature"),
                           ("--eos-id", ["-1", "999"], "eos"), ("--seed", ["-5"], "seed"),
                           ("--prompt", [""], "prompt"), ("--device", ["gpu", "cpu:0"], "device")]:
    CASES += [([*GEN, flag, v], word) for v in values]
for flag, values, word in [("--d-model", ["0", "-1"], "d_model"), ("--n-layers", ["0", "99999"], "n_layers"),
                           ("--vocab-size", ["0"], "vocab_size"), ("--mixer", ["bogus"], "mixer"),
                           ("--n-heads", ["0", "7"], "n_heads")]:
    CASES += [(["info", flag, v], word) for v in values]
for flag, values, word in [("--n-train", ["-1", "x"], "n"), ("--seed", ["-1"], "seed"),
                           ("--min-len", ["x"], "min"), ("--splits", [",", "dev2"], "split"),
                           ("--layout", ["bogus"], "layout"), ("--set", ["n_trian=1"], "n_trian"),
                           ("--set", ["noequals"], "KEY=VALUE")]:
    CASES += [(["data", "mqar", "--out", "/tmp/sessa-fuzz-data", flag, v], word) for v in values]
CASES.append((["data", "bogus", "--out", "/tmp/x"], "invalid choice"))
CASES.append((["data", "mqar", "--out", __file__, "--n-train", "2"], "is a file"))
CASES.append((["train", "--task", "mqar", "--out-dir", __file__], "is a file"))
for flag, values, word in [("--models", ["bogus", ""], "models"), ("--seeds", ["a,b", "-1"], "seeds"),
                           ("--steps", ["0"], "steps"), ("--threads", ["0"], "threads"), ("--jobs", ["0"], "jobs"),
                           ("--tolerance", ["0", "1.5"], "tolerance"), ("--preset", ["bogus"], "preset"),
                           ("--task-option", ["noequals", "n_trian=3"], "")]:
    CASES += [([*BENCH, flag, v], word) for v in values]
CASES.append((["bench", "nope"], "task"))
for flag, values, word in [("--max-lag", ["0", "x"], "max"), ("--gammas", ["2", "x"], "gamma"),
                           ("--decay", ["1.5", "0"], "decay"), ("--n-boot", ["-1"], "n-boot"),
                           ("--probes", ["x", "0"], "probes"), ("--fit-min", ["0"], "fit")]:
    CASES += [(["tails", "--out", "/tmp/sessa-fuzz-tails", "--quick", flag, v], word) for v in values]


def test_the_table_is_large():
    assert len(CASES) >= 140


@pytest.mark.parametrize("argv, word", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_bad_command_lines_fail_in_one_clear_line(argv, word, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse: usage line + one error line
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 2, f"accepted (rc={rc}): {argv}\n{out[-500:]}{err[-500:]}"
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last, err[-1000:]
    assert word.lower() in last.lower(), f"{last!r} does not name {word!r}"
