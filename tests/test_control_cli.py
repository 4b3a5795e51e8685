"""``hagfish controller train`` survives a kill -9 and resumes to the same controller;
``eval`` prints its table; bad options, and a directory trained with other options, are
refused before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from hagfish_jax.control import controller as C
from hagfish_jax.control import data, meta, tasks
from hagfish_jax.shell.cli import main

pytestmark = pytest.mark.timeout(400)

TINY = ["--iterations", "8", "--runs", "4", "--windows", "2", "--steps-per-window", "1",
        "--synthetic", "1", "--hold-out", "digits,breast_cancer,wine", "--save-every", "1",
        "--quiet"]


def _latest(directory) -> int:
    try:
        manifest = json.loads((directory / "checkpoints" / "manifest.json").read_text())
    except (OSError, ValueError):
        return 0
    return max((e["window"] for e in manifest["entries"]), default=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("controller")
    # the training uninterrupted, in this process; the subprocesses then find its
    # programs in the session's compilation cache (tests/conftest.py)
    bank = tasks.make_task(
        data.training_splits(0, hold_out=("digits", "breast_cancer", "wine"), synthetic=1),
        steps_per_window=1, name="bank",
    )
    whole = meta.meta_train(bank, 8, meta.MetaConfig(runs=4, windows=2), key=0)
    whole.controller.save(root / "whole")
    env = {**os.environ, "HAGFISH_COMPILE_CACHE": "0"}
    cmd = [sys.executable, "-m", "hagfish_jax.shell.cli", "controller", "train", *TINY]
    killed = root / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env)
    deadline = time.monotonic() + 240
    while _latest(killed) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    stopped_at = _latest(killed)
    subprocess.run([*cmd, "--out", str(killed)], check=True, env=env, timeout=300)
    return root / "whole", killed, stopped_at, whole.controller


def test_a_killed_training_resumes_to_the_uninterrupted_controller(runs):
    _, killed, stopped_at, whole = runs
    assert 1 <= stopped_at < 8  # it really was stopped part way
    back = C.load(killed)
    assert back.iterations == whole.iterations == 8 and back.spec == whole.spec
    for x, y in zip(jax.tree.leaves(back.params), jax.tree.leaves(whole.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_eval_prints_the_comparison(runs, tmp_path, capsys):
    whole = runs[0]
    out = tmp_path / "eval.json"
    assert main(["controller", "eval", "--controller", str(whole), "--task", "synthetic",
                 "--seeds", "2", "--windows", "3", "--json", str(out), "--no-compile-cache"]) == 0
    text = capsys.readouterr().out
    assert "fixed default" in text and "learned" in text
    numbers = json.loads(out.read_text())
    assert len(numbers["learned"]["test_accuracy"]) == 2
    assert all(0.0 <= v <= 1.0 for v in numbers["learned"]["test_f1"])


def test_bad_options_are_refused_before_any_work(runs, tmp_path, capsys):
    whole = runs[0]
    out = tmp_path / "never"
    assert main(["controller", "train", "--runs", "0", "--out", str(out)]) == 2
    assert "runs must be an integer >= 1" in capsys.readouterr().err
    assert main(["controller", "train", "--hold-out", "mnist", "--out", str(out)]) == 2
    assert "unknown families" in capsys.readouterr().err
    assert not out.exists()
    assert main(["controller", "eval", "--controller", str(out)]) == 2
    assert "no controller" in capsys.readouterr().err
    # another setting in a directory that holds a controller
    other = [*TINY, "--windows", "3", "--out", str(whole), "--no-compile-cache"]
    assert main(["controller", "train", *other]) == 2
    assert "another setting" in capsys.readouterr().err
    # the same controller, trained another way (more runs, other data): refused, not
    # resumed as if the new options had been used
    killed = runs[1]
    record = (killed / "training.json").read_text()
    for change, said in ((["--runs", "8"], "runs: 4 -> 8"), (["--seed", "5"], "seed: 0 -> 5")):
        args = [*TINY, *change, "--out", str(killed), "--no-compile-cache"]
        assert main(["controller", "train", *args]) == 2
        assert said in capsys.readouterr().err
    assert (killed / "training.json").read_text() == record
    assert C.load(killed).iterations == 8
