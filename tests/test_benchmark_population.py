"""Smoke test of the building blocks of benchmarks/population*.py (a few seconds)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj

pytest.importorskip("sklearn")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MODULES = (
    "_common",
    "_optuna",
    "population_toy",
    "population",
    "population_compile_time",
    "population_warm",
)


@pytest.fixture(scope="module")
def bench():
    """The benchmark modules, imported as the scripts import each other."""
    sys.path.insert(0, str(BENCHMARKS))
    before = set(sys.modules)
    try:
        yield {name: importlib.import_module(name) for name in MODULES}
    finally:
        sys.path.remove(str(BENCHMARKS))
        for name in set(sys.modules) - before:
            if str(BENCHMARKS) in str(getattr(sys.modules[name], "__file__", "") or ""):
                del sys.modules[name]


@pytest.fixture(scope="module")
def tiny(bench):
    common = bench["_common"]
    setup = common.Setup("smoke", members=3, windows=2, steps_per_window=2, hidden=(8,))
    return setup, common.make_task(setup, 0)


def test_no_benchmark_file_is_over_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in BENCHMARKS.glob("*.py")}
    assert sizes and max(sizes.values()) <= 400, sizes


def test_the_entry_script_offers_every_part(bench):
    with pytest.raises(SystemExit):  # argparse rejects an unknown part, after listing them
        bench["population"].main(["--part", "nope"])


@pytest.mark.parametrize("methods", ["bc", "az"])
def test_the_warm_part_refuses_a_method_subset_without_a_or_with_unknown_letters(
    bench, methods, capsys
):
    with pytest.raises(SystemExit):  # before any process is started
        bench["population_warm"].main(["--methods", methods])
    assert "--methods" in capsys.readouterr().err


def test_selection_keeps_the_first_best_finite_validation_score(bench):
    sel = bench["_common"].Selection()
    sel.add(10, math.nan, 0.1)
    assert math.isnan(sel.test)
    sel.add(20, 0.5, 0.6)
    sel.add(30, 0.5, 0.9)  # a tie does not replace
    sel.add(40, 0.4, 1.0)
    assert (sel.val, sel.test, sel.steps) == (0.5, 0.6, 40)
    assert [t for _, t in sel.curve][1:] == [0.6, 0.6, 0.6]
    # the library's rule: a tie with a lower validation loss replaces, a higher does not
    sel = bench["_common"].Selection()
    sel.add(10, 0.5, 0.6, loss=0.4)
    sel.add(20, 0.5, 0.7, loss=0.5)
    sel.add(30, 0.5, 0.8, loss=0.3)
    sel.add(40, 0.5, 0.9, loss=math.nan)
    assert (sel.val, sel.test, sel.loss) == (0.5, 0.8, 0.3)


def test_both_optuna_wirings_train_the_same_model(bench, tiny):
    setup, task = tiny
    hp = {**task.default_hparams, "learning_rate": 0.01, "dropout_rate": 0.2}
    start_i, make_i, eval_i = bench["_optuna"].inject_programs(task, 0)
    start_r, make_r, eval_r = bench["_optuna"].rebuilt_programs(task, setup, 0)
    a = eval_i(make_i(hp)(start_i(0, hp), 3))
    b = eval_r(make_r(hp)(start_r(0, hp), 3))
    assert set(a) >= {"score", "test", "val_loss"}
    np.testing.assert_allclose(float(a["val_loss"]), float(b["val_loss"]), rtol=1e-4)


def test_population_runs_through_the_program_and_selects_on_validation(bench, tiny):
    setup, task = tiny
    result = bench["_common"].run_population(task, setup, 0, hj.pbt(task.space), warm=True)
    assert result.steps == 3 * 2 * 2 and result.trials == 3
    assert len(result.curve) == 2 and 0.0 <= result.test <= 1.0
    assert result.compiles == 1 and math.isfinite(result.warm)  # one program: start + windows


def test_one_after_another_runs_each_member_once_unless_asked_for_a_warm_pass(
    bench, tiny, monkeypatch
):
    # the warm-cache part times the whole call: a second, warm pass inside it would
    # charge the baseline for running every member twice
    setup, task = tiny
    common = bench["_common"]
    hps = common.sampled_hparams(task.space, 0, setup.members)
    calls = []
    get = jax.device_get
    monkeypatch.setattr(common.jax, "device_get", lambda x: calls.append(1) or get(x))
    once = common.run_sequential(task, setup, 0, hps)
    assert len(calls) == setup.members and math.isnan(once.warm)
    calls.clear()
    twice = common.run_sequential(task, setup, 0, hps, warm=True)
    assert len(calls) == 2 * setup.members and math.isfinite(twice.warm)
    assert (twice.test, twice.val, twice.steps) == (once.test, once.val, once.steps)


def test_toy_program_runs_a_population_and_fixed_members(bench):
    toy_mod = bench["population_toy"]
    toy = toy_mod.Toy(steps=2, half_period=2, periods=1)
    run, scale = toy_mod.toy_program(toy, [0.01, 0.1], hj.fixed())
    err, lr = jax.device_get(run(jax.random.key(0)))
    assert err.shape == lr.shape == (4, 2)
    np.testing.assert_allclose(lr, [[0.01, 0.1]] * 4, rtol=1e-6)
    assert np.all(np.isfinite(err))
    s = np.asarray(scale(np.arange(5)))
    np.testing.assert_allclose(s[[0, 2, 4]], [1.0, toy.scale_max, 1.0], rtol=1e-6)


def test_toy_members_share_their_target_and_pbt_copies_the_best(bench):
    toy_mod = bench["population_toy"]
    toy = toy_mod.Toy(steps=5, half_period=2, periods=1)
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))
    run, _ = toy_mod.toy_program(toy, [1e-3, 0.05], hj.pbt(space, fraction=0.5, ready=1))
    err, lr = jax.device_get(run(jax.random.key(1)))
    # after the first window the worse member (lr 1e-3, lagging) copies the better one
    assert err[0, 1] < err[0, 0]
    assert lr[1, 0] != pytest.approx(1e-3)


def test_compile_time_child_measures_the_program(bench):
    out = bench["population_compile_time"].child("pop32 pbt shared", "jax")
    assert out["compile"] > 0 and out["trace_lower"] > 0


def test_a_given_hyperparameter_dict_is_an_argument_of_the_start_program(bench, tiny):
    setup, task = tiny
    hp = {k: np.full(3, v, np.float32) for k, v in task.default_hparams.items()}
    hp["learning_rate"] = np.array([1e-3, 2e-3, 3e-3], np.float32)
    run = bench["_common"].run_population
    given = run(task, setup, 0, hj.fixed(), hp)
    traced = run(
        task, setup, 0, hj.fixed(), lambda key, n: {k: jnp.asarray(v) for k, v in hp.items()}
    )
    sampled = run(task, setup, 0, hj.fixed())
    assert given.steps == 3 * 2 * 2
    assert (given.val, given.test) == (traced.val, traced.test)
    assert given.curve != sampled.curve or given.val != sampled.val
