"""The benchmark scripts run end to end (--quick) and write their JSON + markdown results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script,name,keys",
    [
        ("bench_feedback.py", "feedback_solve", {"chunk_fwd_s", "dense_fwd_s", "chunk_fwd_gflops", "fwd_speedup"}),
        ("bench_layer.py", "layer", {"sessa_fwdbwd_s", "attention_fwdbwd_s", "fwdbwd_ratio"}),
        pytest.param(  # three fresh interpreters (parent + one per config): ~45 s on the shared machine
            "bench_memory.py", "memory", {"peak_rss_gib", "step_gib", "within_24gib"}, marks=pytest.mark.slow
        ),
    ],
)
def test_benchmark_quick_run_writes_results(tmp_path, script, name, keys):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},  # no spinning workers on the shared CI machine
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / f"{name}.json").read_text())
    assert payload["rows"] and all(keys <= set(row) for row in payload["rows"])
    assert all(v > 0 for row in payload["rows"] for k, v in row.items() if k.endswith("_s") and v is not None)
    md = (tmp_path / f"{name}.md").read_text()
    assert md.startswith(f"### {name}") and md in proc.stdout
