"""Hugging Face Auto* registration works whichever of `import sessa` and `import transformers` comes first,
and model type "sessa" is in transformers' causal-LM name table (what lm-evaluation-harness consults).
Each order runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
cfg = AutoConfig.for_model("sessa", vocab_size=64, d_model=16, n_layers=1)
model = AutoModelForCausalLM.from_config(cfg)
assert type(model).__name__ == "SessaForCausalLM", type(model)
assert MODEL_FOR_CAUSAL_LM_MAPPING_NAMES["sessa"] == "SessaForCausalLM"
assert not any(type(f).__name__ == "_TransformersHook" for f in sys.meta_path)  # one-shot: gone
model.save_pretrained(sys.argv[1])
again = AutoModelForCausalLM.from_pretrained(sys.argv[1])
assert type(again).__name__ == "SessaForCausalLM"
print("ok")
"""

ORDERS = {
    "sessa_first": "import sys\nimport sessa\nassert 'transformers' not in sys.modules\n",
    "transformers_first": "import transformers\nimport sessa\n",
    "submodule_first": "import sessa\nimport transformers.models.auto\n",
    # a library asking whether transformers is installed (find_spec) before importing it
    "looked_up_first": "import importlib.util\nimport sessa\nassert importlib.util.find_spec('transformers')\n",
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_registration_in_either_import_order(order: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", ORDERS[order] + CHECK, str(tmp_path / "m")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_register_adds_causal_lm_name() -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from sessa.models.hf import register

    register()  # idempotent
    assert MODEL_FOR_CAUSAL_LM_MAPPING_NAMES["sessa"] == "SessaForCausalLM"


def test_import_sessa_with_transformers_blocked():
    # sys.modules["transformers"] = None is how a process marks transformers absent: sessa must not try it
    code = "import sys\nsys.modules['transformers'] = None\nimport sessa\nprint(sessa.SessaLM.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and r.stdout.strip() == "SessaLM", r.stderr[-2000:]
