"""sessa.utils.checks: every structural check names the argument; value checks run only in debug mode."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import sessa.utils.checks as checks
from sessa.utils.checks import (
    check_bool,
    check_choice,
    check_cu_seqlens,
    check_equal,
    check_finite,
    check_float,
    check_gamma_max,
    check_heads,
    check_hidden,
    check_in_range,
    check_int,
    check_mask,
    check_split,
    check_tensor,
    check_token_ids,
    debug_checks,
    debug_checks_enabled,
    set_debug_checks,
)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: check_int("n", True), TypeError, r"n must be an int, got True"),
        (lambda: check_int("n", 2.0, lo=1), TypeError, r"n must be an int >= 1, got 2.0"),
        (lambda: check_int("n", 0, lo=1), ValueError, r"n must be an int >= 1, got 0"),
        (lambda: check_int("i", 5, lo=0, hi=4), ValueError, r"i must be an int in \[0, 4\], got 5"),
        (lambda: check_int("k", "3", lo=1, none_ok=True), TypeError, r"k must be an int >= 1 or None"),
        (lambda: check_float("lr", "x", lo=0.0, lo_open=True), TypeError, r"lr must be a finite number > 0.0"),
        (lambda: check_float("lr", float("nan")), ValueError, r"lr must be a finite number, got nan"),
        (lambda: check_float("p", 1.5, lo=0.0, hi=1.0, lo_open=True), ValueError, r"p must be .* in \(0.0, 1.0\]"),
        (lambda: check_float("b", 1.0, lo=0.0, hi=1.0, hi_open=True), ValueError, r"b must be .* in \[0.0, 1.0\)"),
        (lambda: check_bool("flag", 1), TypeError, r"flag must be a bool"),
        (lambda: check_choice("impl", "fast", ("auto", "chunk")), ValueError, r"impl must be one of \['auto'"),
        (lambda: check_choice("x", 1, ("1",)), ValueError, r"x must be one of"),
        (lambda: check_split("training"), ValueError, r"split must be one of \['train', 'validation', 'test'\]"),
        (lambda: check_tensor("q", [1.0]), TypeError, r"q must be a torch.Tensor, got list"),
        (lambda: check_tensor("q", torch.ones(2), ndim=4), ValueError, r"q must have 4 dimensions, got shape"),
        (lambda: check_tensor("q", torch.ones(2, dtype=torch.long), floating=True), TypeError, "floating-point"),
        (lambda: check_tensor("ids", torch.ones(2, dtype=torch.bool), integer=True), TypeError, "integer"),
        (lambda: check_hidden("x", torch.ones(1, 2, 3), 4), ValueError, r"x must have width d_model = 4"),
        (lambda: check_hidden("x", torch.ones(0, 2, 4), 4), ValueError, r"x has an empty batch"),
        (lambda: check_mask("m", torch.ones(2, 3), (2, 3)), TypeError, r"m must be a bool or integer tensor"),
        (lambda: check_mask("m", torch.ones(2, 4, dtype=torch.long), (2, 3)), ValueError,
         r"m must be \[B, past \+ T\] = \[2, 3\], got shape \[2, 4\]"),
        (lambda: check_token_ids("ids", torch.ones(1, 2), 8), TypeError, r"ids must be an integer tensor"),
        (lambda: check_token_ids("ids", torch.ones(0, 2, dtype=torch.long), 8), ValueError, "empty batch"),
        (lambda: check_cu_seqlens(torch.tensor([0, 3]), 4), ValueError, r"end at the packed length 4"),
        (lambda: check_cu_seqlens(torch.tensor([0, 3, 2, 4]), 4), ValueError, "non-decreasing"),
        (lambda: check_heads(8, 3, None, False), ValueError, r"d_model \(8\) must be divisible by n_heads \(3\)"),
        (lambda: check_heads(8, 4, 3, False), ValueError, r"n_kv_heads \(3\) must divide n_heads \(4\)"),
        (lambda: check_heads(6, 2, None, True), ValueError, "even head dim"),
        (lambda: check_gamma_max(1.0), ValueError, r"gamma_max must be a finite number in \(0.0, 1.0\)"),
    ],
)
def test_structural_checks_name_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_structural_checks_return_the_checked_value():
    assert check_int("n", 3, lo=1) == 3 and check_int("n", None, none_ok=True) is None
    assert check_float("x", 2) == 2.0 and isinstance(check_float("x", 2), float)
    assert check_split("dev") == "validation" and check_split("test") == "test"
    assert check_heads(8, 4, 2, True) == (4, 2, 2) and check_heads(8, 2, None, False) == (2, 2, 4)
    assert check_cu_seqlens(torch.tensor([0, 2, 2, 5]), 5) == [0, 2, 2, 5]
    m = check_mask("m", torch.tensor([[1, 0, 1]]), (1, 3))
    assert m.dtype == torch.bool and m.tolist() == [[True, False, True]]
    for dtype in (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64):  # the documented cast
        ids = check_token_ids("ids", torch.tensor([[1, 2]], dtype=dtype), 8)
        assert ids.dtype == torch.int64 and ids.tolist() == [[1, 2]]


def test_debug_mode_is_off_by_default_and_the_context_manager_restores_it():
    assert not debug_checks_enabled()
    bad = torch.tensor([1.0, float("inf")])
    check_finite("x", bad)  # off: nothing is read from the tensor
    with debug_checks():
        assert debug_checks_enabled()
        with pytest.raises(ValueError, match=r"x must be finite but holds NaN/Inf; 1 entry breaks it, .*\(1,\)"):
            check_finite("x", bad)
        with debug_checks(False):  # nested: off inside, back on after
            check_finite("x", bad)
        assert debug_checks_enabled()
    assert not debug_checks_enabled()
    with pytest.raises(RuntimeError), debug_checks():  # restored even when the block raises
        raise RuntimeError
    assert not debug_checks_enabled()
    set_debug_checks(True)
    try:
        assert debug_checks_enabled()
    finally:
        set_debug_checks(False)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        set_debug_checks(1)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        with debug_checks("yes"):
            pass


def test_value_checks_report_the_first_bad_entry():
    with debug_checks():
        with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\]; 2 entries break it, the first .*\(0, 1\): 7"):
            check_in_range("ids", torch.tensor([[0, 7, 9]]), 0, 5)
        check_in_range("labels", torch.tensor([[0, -100, 4]]), 0, 4, also=-100)
        with pytest.raises(ValueError, match=r"g must lie in \(-1, 1\)"):
            check_in_range("g", torch.tensor([0.5, -1.0]), -1, 1, open_interval=True)
        with pytest.raises(ValueError, match=r"g must lie in \(-1, 1\)"):  # NaN lies in no range
            check_in_range("g", torch.tensor([float("nan")]), -1, 1, open_interval=True)
        with pytest.raises(ValueError, match=r"m must hold only 0 \(padding\) and 1 \(real token\)"):
            check_mask("m", torch.tensor([[1, 2]]), (1, 2))
        with pytest.raises(ValueError, match=r"ids must lie in \[0, vocab_size = 8\); .*: -1"):
            check_token_ids("ids", torch.tensor([[1, -1]]), 8)
        check_token_ids("labels", torch.tensor([[1, -100]]), 8, ignore_index=-100)
        check_finite("empty", torch.empty(0))
        with pytest.raises(ValueError, match=r"m\[:, :2\] must match; 1 entry breaks it, .* \(1, 0\): False"):
            check_equal("m[:, :2]", torch.tensor([[True, True], [False, True]]), torch.ones(2, 2, dtype=torch.bool),
                        "must match")
    # off: the same inputs pass without a look at the values
    check_in_range("ids", torch.tensor([[0, 7, 9]]), 0, 5)
    assert check_mask("m", torch.tensor([[1, 2]]), (1, 2)).tolist() == [[True, True]]


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_env_var_turns_debug_mode_on_and_a_bad_value_is_refused():
    code = "import sessa.utils.checks as c; print(c.debug_checks_enabled())"
    assert _run(code, SESSA_DEBUG_CHECKS="1").stdout.strip() == "True"
    assert _run(code, SESSA_DEBUG_CHECKS="0").stdout.strip() == "False"
    res = _run(code, SESSA_DEBUG_CHECKS="maybe")
    assert res.returncode != 0 and "SESSA_DEBUG_CHECKS must be 1 or 0" in res.stderr


def test_checks_module_needs_torch_alone():
    """The module loads on its own (no sessa package, no transformers/numpy/yaml) and sessa.utils is light."""
    code = f"""
        import importlib.util, sys
        from importlib.abc import MetaPathFinder

        class Hide(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("transformers", "yaml", "tokenizers", "safetensors", "sessa"):
                    raise ImportError(name + " hidden for this test")
                return None

        import torch
        sys.meta_path.insert(0, Hide())
        spec = importlib.util.spec_from_file_location("checks", {checks.__file__!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(mod.check_int("n", 3, lo=1))
        """
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "3"
    init = os.path.join(os.path.dirname(checks.__file__), "__init__.py")
    with open(init, encoding="utf-8") as f:
        imports = [line for line in f if line.startswith(("import ", "from "))]
    assert all(line.split()[1].split(".")[0] in ("sessa", "difflib", "collections") for line in imports), imports
    assert not any("torch" in line or "transformers" in line for line in imports), imports
