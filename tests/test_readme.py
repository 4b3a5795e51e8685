"""The README's quick start runs as written."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_top_shows_both_setup_commands():
    text = README.read_text()
    head = text[: text.index("## Quick start")]
    assert "hagfish demo" in head
    assert "python -m pytest" in head


def test_quick_start_runs_and_tunes(capsys):
    blocks = python_blocks()
    assert blocks, "README has no python block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "loss" in out
    losses = namespace["losses"]
    assert float(losses[-1]) < 0.01 * float(losses[0])
    assert float(namespace["lrs"][-1]) != 1e-3  # the tuner moved the learning rate
