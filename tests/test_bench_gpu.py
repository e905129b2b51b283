"""benchmarks/bench_gpu.py: refuses clearly without CUDA, and its measuring code runs end to end on CPU.

The GPU figures themselves come from running the script on a GPU machine; here every section (solve, layer,
decode), the budget / out-of-memory bookkeeping and the JSON + markdown output run at tiny sizes on CPU.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_gpu  # noqa: E402


def test_refuses_without_cuda(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main(["--quick", "--out", str(tmp_path)]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_all_sections_run_on_cpu_and_write_results(tmp_path):
    cfg = bench_gpu.Config(
        device="cpu", dtype=torch.float32, d_model=32, n_heads=4, tokens=128, ts=(32, 64),
        solve_impls=("chunk", "naive"), layer_impl="chunk", contexts=(16,), decode_layers=1, decode_steps=2,
        repeats=1,
    )
    sections = bench_gpu.run(cfg, tmp_path)
    solve, layer, decode = sections["solve"], sections["layer"], sections["decode"]
    assert [r["T"] for r in solve] == [32, 64] and [r["B"] for r in solve] == [4, 2]
    for r in solve:
        assert r["chunk_fwdbwd_ms"] > 0 and r["naive_fwdbwd_ms"] > 0
        assert r["speedup_vs_naive_fwdbwd"] == pytest.approx(r["naive_fwdbwd_ms"] / r["chunk_fwdbwd_ms"])
        assert r["chunk_peak_gib"] is None  # memory is measured on CUDA only
    assert all(r["fwdbwd_ratio"] > 0 for r in layer)
    assert decode[0]["sessa_tokens_per_s"] > 0 and decode[0]["time_ratio"] > 0
    for name in ("solve", "layer", "decode"):
        payload = json.loads((tmp_path / f"gpu_{name}.json").read_text())
        assert payload["rows"] and payload["config"]["dtype"] == "torch.float32"
        assert (tmp_path / f"gpu_{name}.md").read_text().startswith(f"### gpu_{name}")


def test_budget_and_out_of_memory_are_reported_not_fatal():
    cfg = bench_gpu.Config(device="cpu", budget_s=0.0)
    assert bench_gpu.measured("x", cfg, 1.0, lambda: 1 / 0) is None  # over budget: not even called
    cfg.budget_s = 1e9

    def oom():
        raise torch.OutOfMemoryError("test")

    if not torch.cuda.is_available():  # empty_cache is a no-op without CUDA
        assert bench_gpu.measured("y", cfg, 0.0, oom) is None
    assert cfg.skipped == ["x: skipped (time budget)"] + (["y: out of memory"] if not torch.cuda.is_available() else [])


@pytest.mark.slow
def test_sections_with_the_triton_path_in_the_interpreter(tmp_path):
    """The configuration the GPU run uses (bf16, triton solve / layer / decoding step), at toy sizes on CPU."""
    pytest.importorskip("triton", reason="needs the optional triton package")
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("CPU-only check through Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1)")
    cfg = bench_gpu.Config(
        device="cpu", dtype=torch.bfloat16, d_model=32, n_heads=4, tokens=64, ts=(32,),
        solve_impls=("triton", "chunk"), layer_impl="triton", contexts=(40,), decode_layers=1, decode_steps=2,
        repeats=1,
    )
    sections = bench_gpu.run(cfg, tmp_path)
    assert sections["solve"][0]["triton_fwdbwd_ms"] > 0 and sections["solve"][0]["speedup_vs_chunk_fwdbwd"] > 0
    assert sections["layer"][0]["fwdbwd_ratio"] > 0 and sections["decode"][0]["time_ratio"] > 0
    assert not cfg.skipped
