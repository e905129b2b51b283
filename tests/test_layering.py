"""The package's layers (docs/architecture.md): a module imports only from its own layer or lower ones.

utils -> ops -> layers -> models (+ tokenization, generation) -> tasks -> train -> compare, analysis ->
commands, cli. Checked on the source (every import statement, also those inside functions).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "sessa"
RANK = {
    "utils": 0, "ops": 1, "layers": 2, "models": 3, "tokenization": 3, "generation": 3, "tasks": 4, "train": 5,
    "compare": 6, "analysis": 6, "commands": 7, "cli": 7, "__main__": 8, "__init__": 8,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sessa"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "sessa":
                out.append((node.lineno, node.module))
    return out


FILES = sorted(p for p in ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_higher_layer(path):
    own = path.relative_to(ROOT).parts
    own_part = own[0].removesuffix(".py") if len(own) > 1 or own[0] != "__init__.py" else "__init__"
    assert own_part in RANK, f"{path}: add its layer to RANK (and docs/architecture.md)"
    bad = [f"line {line}: {mod}" for line, mod in _imports(path)
           if mod != "sessa" and RANK[_part(mod)] > RANK[own_part]]
    assert not bad, f"{path.relative_to(ROOT)} (layer {own_part}) imports higher layers: {bad}"
