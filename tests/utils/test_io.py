"""Bounded readers of config files: size, depth, alias bombs, duplicate keys, encodings; clear ValueErrors."""

import subprocess
import sys

import pytest

from sessa.train.config import TrainConfig, load_yaml
from sessa.utils.io import load_yaml_file, read_json_file

BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def test_json_deeper_than_the_bound_is_a_value_error_not_a_recursion_error(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match=f"{p}: nested deeper than 64 levels"):
        read_json_file(p)
    p.write_text('{"a": "' + "[" * 1000 + '", "b": [[1]]}')  # brackets inside strings do not count
    assert read_json_file(p)["b"] == [[1]]


def test_json_size_and_encoding(tmp_path):
    p = tmp_path / "big.json"
    p.write_text('"' + "x" * 2000 + '"')
    with pytest.raises(ValueError, match="larger than the 1,000 bytes allowed"):
        read_json_file(p, max_bytes=1000)
    p.write_bytes('{"a": 1}'.encode("utf-16"))
    with pytest.raises(ValueError, match="not UTF-8 text|NUL characters"):
        read_json_file(p)
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ValueError, match="not UTF-8 text|NUL"):
        read_json_file(p)
    p.write_text('{"a": ')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json_file(p)


def test_yaml_alias_bomb_is_refused(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    assert p.stat().st_size < 1000
    with pytest.raises(ValueError, match=f"{p}: more than 100,000 values once aliases are expanded"):
        load_yaml_file(p)
    with pytest.raises(ValueError, match="alias"):
        TrainConfig.from_yaml(p)


def test_yaml_depth_duplicates_and_merge_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ValueError, match=f"{p}: nested"):
        load_yaml_file(p)
    p.write_text("a: " + "[" * 70 + "]" * 70 + "\n")
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        load_yaml_file(p)
    p.write_text("steps: 10\nlr: 0.1\nsteps: 20\n")
    with pytest.raises(ValueError, match=r"(?s)not valid YAML.*found the key 'steps' twice \(first on line 1\)"):
        load_yaml_file(p)
    p.write_text("base: &b {lr: 0.1, steps: 5}\nrun:\n  <<: *b\n  steps: 7\n")
    assert load_yaml_file(p)["run"] == {"lr": 0.1, "steps": 7}  # overriding a merged key is allowed


def test_empty_yaml_config_is_an_error_naming_the_file(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing but a comment\n")
    with pytest.raises(ValueError, match=f"{p}: the training config is empty"):
        load_yaml(p)
    r = subprocess.run([sys.executable, "-m", "sessa.cli", "train", "--config", str(p)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and f"{p}: the training config is empty" in r.stderr
