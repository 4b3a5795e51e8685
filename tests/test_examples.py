"""The scripts in examples/ run (at small sizes) through ``hj.program``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested_here():
    # the others have modules of their own: test_nnx.py, test_stream.py (and the
    # notebook, test_notebook.py)
    assert {p.stem for p in EXAMPLES.glob("*.py")} == {
        "quickstart",
        "pbt_digits",
        "bayes_in_training",
        "nnx_digits",
        "streaming_drift",
    }


def test_quickstart_runs(capsys):
    result = load_example("quickstart").run(windows=4, steps_per_window=16, hidden=(32,))
    rows = result["rows"]
    assert rows["val_acc"].shape == (4,)
    assert result["best_val_accuracy"] == pytest.approx(float(np.nanmax(rows["val_acc"])))
    assert result["best_val_accuracy"] > 0.3  # chance is 0.1
    assert 0.0 <= result["test_accuracy"] <= 1.0
    # the window it returns is the one it prints, and holds the best score
    assert f"best window {result['best_window']}:" in capsys.readouterr().out
    assert rows["val_acc"][result["best_window"]] == pytest.approx(result["best_val_accuracy"])


def test_pbt_example_runs(capsys):
    example = load_example("pbt_digits")
    scores, parents = example.run(n=4, generations=3, steps_per_window=8, hidden=(16,))
    assert scores.shape == (3, 4) and parents.shape == (3, 4)
    assert np.all((parents >= 0) & (parents < 4))
    # ready=2 (the default): nobody is compared in generation 1, then one a generation
    assert [int(r) for r in (parents != np.arange(4)).sum(1)] == [0, 1, 1]
    out = capsys.readouterr().out
    assert "best member" in out and "learning_rate=" in out


def test_bayes_example_runs(capsys):
    example = load_example("bayes_in_training")
    rows, best, test = example.run(windows=6, steps_per_window=8, hidden=(16,))
    assert rows["score"].shape == (6,)
    assert best == pytest.approx(float(np.nanmax(rows["score"])))
    assert 0.0 <= test <= 1.0
    assert "best val accuracy" in capsys.readouterr().out
