"""Smoke test of the building blocks of benchmarks/population.py (a few seconds)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import hagfish_jax as hj

pytest.importorskip("sklearn")

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "population.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_population", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_selection_keeps_the_first_best_finite_validation_score(bench):
    sel = bench.Selection()
    sel.add(10, math.nan, 0.1)
    assert math.isnan(sel.test)
    sel.add(20, 0.5, 0.6)
    sel.add(30, 0.5, 0.9)  # a tie does not replace
    sel.add(40, 0.4, 1.0)
    assert (sel.val, sel.test, sel.steps) == (0.5, 0.6, 40)
    assert [t for _, t in sel.curve][1:] == [0.6, 0.6, 0.6]


def test_both_optuna_wirings_train_the_same_model(bench):
    setup = bench.Setup("smoke", members=2, windows=1, steps_per_window=2, hidden=(8,))
    task = bench.make_task(setup, 0)
    hp = {**task.default_hparams, "learning_rate": 0.01, "dropout_rate": 0.2}
    start_i, make_i, eval_i = bench.inject_programs(task, 0)
    start_r, make_r, eval_r = bench.rebuilt_programs(task, setup, 0)
    a = eval_i(make_i(hp)(start_i(0, hp), 3))
    b = eval_r(make_r(hp)(start_r(0, hp), 3))
    assert set(a) >= {"score", "test", "val_loss"}
    np.testing.assert_allclose(float(a["val_loss"]), float(b["val_loss"]), rtol=1e-4)


def test_toy_program_runs_a_population_and_fixed_members(bench):
    toy = bench.Toy(steps=2, half_period=2, periods=1)
    run, scale = bench.toy_program(toy, [0.01, 0.1], hj.fixed())
    err, lr = jax.device_get(run(jax.random.key(0)))
    assert err.shape == lr.shape == (4, 2)
    np.testing.assert_allclose(lr, [[0.01, 0.1]] * 4, rtol=1e-6)
    assert np.all(np.isfinite(err))
    s = np.asarray(scale(np.arange(5)))
    np.testing.assert_allclose(s[[0, 2, 4]], [1.0, toy.scale_max, 1.0], rtol=1e-6)
