"""The block extractor the docs test relies on: fences, indentation, continuations, comments, ids."""

import pytest
from snippets import blocks_of, looks_like_commands, shell_commands, units

DOC = """# Title

```bash
sessa train --config a.yaml \\
    --steps 5   # trailing comment
# a whole-line comment

$ sessa eval --checkpoint runs/x
```

1. a list item:

   ```python
   import os
   print(os.sep)
   ```

```text
sessa train: stopped by SIGTERM after step 441
```
"""


def test_blocks_units_and_ids(tmp_path):
    (tmp_path / "d.md").write_text(DOC)
    blocks = blocks_of("d.md", root=str(tmp_path))
    assert [(b.ordinal, b.lang, b.line) for b in blocks] == [(1, "bash", 3), (2, "python", 13), (3, "text", 18)]
    assert blocks[1].text == "import os\nprint(os.sep)"  # dedented by the fence's indentation
    got = [u.id for u in units(blocks)]
    assert got == ["d.md[1].1 sessa train --config a.yaml --steps 5", "d.md[1].2 sessa eval --checkpoint runs/x",
                   "d.md[2] import os"]
    assert not looks_like_commands(blocks[2].text)  # printed output, not a command


def test_shell_commands_and_command_detection():
    assert shell_commands('a --x "q" \\\n  --y 1  # c\n\n# only\nb') == ['a --x "q" --y 1', "b"]
    assert looks_like_commands("x = 1\nsessa tails --quick")
    assert not looks_like_commands("s_t = f_t + γ_t · s_j")


def test_unclosed_fence_is_an_error(tmp_path):
    (tmp_path / "d.md").write_text("```bash\nsessa info\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks_of("d.md", root=str(tmp_path))
