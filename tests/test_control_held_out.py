"""``hagfish controller eval`` never reports a task whose data the controller was
meta-trained on as held out, and ``controller train`` holds out the eval tasks' data
by default."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from hagfish_jax.control import EVAL_FAMILIES, EVAL_TASKS, data, suite
from hagfish_jax.shell import controller_cli
from hagfish_jax.shell.cli import _parser, main

pytestmark = pytest.mark.timeout(300)


def _rows(split) -> set[bytes]:
    parts = (split.x_train, split.x_val, split.x_test)
    return {r.tobytes() for p in parts for r in np.asarray(p, np.float32)}


def test_by_default_train_leaves_out_every_eval_tasks_data():
    args = _parser().parse_args(["controller", "train"])
    hold_out = [t.strip() for t in args.hold_out.split(",") if t.strip()]
    bank = [_rows(s) for s in data.training_splits(args.seed, hold_out=hold_out, synthetic=1)]
    for name in EVAL_TASKS:
        if name == "text":  # the docstrings are in no family of the bank
            continue
        rows = _rows(suite.eval_task(name, 0).data[0])
        assert all(not rows & b for b in bank), name  # not one row shared
    assert set(hold_out) == {f for f in EVAL_FAMILIES.values() if f}


def test_eval_refuses_a_task_whose_family_was_meta_trained(tmp_path, capsys):
    out = tmp_path / "ctrl"
    assert main(["controller", "train", "--out", str(out), "--iterations", "1", "--runs", "2",
                 "--windows", "2", "--steps-per-window", "1", "--save-every", "1",
                 "--hold-out", "synthetic,digits,breast_cancer", "--quiet",
                 "--no-compile-cache"]) == 0
    capsys.readouterr()
    assert json.loads((out / "training.json").read_text())["setting"]["hold_out"] == [
        "breast_cancer", "digits", "synthetic"]
    assert main(["controller", "eval", "--controller", str(out), "--task", "wine",
                 "--no-compile-cache"]) == 2
    err = capsys.readouterr().err
    assert "wine" in err and "--hold-out" in err and "meta-trained on" in err


def test_eval_says_when_it_cannot_tell_what_was_held_out(capsys):
    args = argparse.Namespace(task="tabular", controller="somewhere")
    # no training record (a controller saved by hand): run, with a note
    assert controller_cli._check_held_out(args, None) is None
    assert "breast_cancer" in capsys.readouterr().err
    # the CLI's bank with breast cancer held out: nothing to say
    record = {"task": "bank", "setting": {"hold_out": ["breast_cancer"], "synthetic": 6}}
    assert controller_cli._check_held_out(args, record) is None
    assert capsys.readouterr().err == ""
    record["setting"]["hold_out"] = []
    assert "breast_cancer" in controller_cli._check_held_out(args, record)
