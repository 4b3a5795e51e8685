"""One integer check everywhere: every integer-valued argument of the factories and
helpers refuses fractions, booleans, NaN/inf, strings and values below its minimum
with a ValueError naming the argument and the accepted range, before any work."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax.core._checks import integer, integer_or_array
from hagfish_jax.shell.loop import MetaController, RegimeDetector

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
SCORES = jnp.array([0.5, 0.1, 0.9, 0.7])
ALIVE = jnp.array([True, False, True, True])
PROPOSAL = hj.Proposal({"learning_rate": jnp.full(4, 0.01)}, jnp.arange(4), False)

# name -> (call with the value, argument name, minimum, a valid value)
CASES = {
    "plateau.patience": (lambda v: hj.plateau(patience=v), "patience", 1, 2),
    "plateau.cooldown": (lambda v: hj.plateau(cooldown=v), "cooldown", 0, 2),
    "bayes.capacity": (lambda v: hj.bayes(SPACE, capacity=v), "capacity", 4, 8),
    "bayes.candidates": (lambda v: hj.bayes(SPACE, candidates=v), "candidates", 4, 8),
    "bayes.horizon": (lambda v: hj.bayes(SPACE, horizon=v), "horizon", 1, 50),
    "bayes.min_observations": (
        lambda v: hj.bayes(SPACE, min_observations=v), "min_observations", 0, 2
    ),
    "bayes.fit_steps": (lambda v: hj.bayes(SPACE, fit_steps=v), "fit_steps", 0, 3),
    "bayes.refit_every": (lambda v: hj.bayes(SPACE, refit_every=v), "refit_every", 1, 2),
    "pbt.horizon": (lambda v: hj.pbt(SPACE, horizon=v), "horizon", 1, 50),
    "pb2.capacity": (lambda v: hj.pb2(SPACE, capacity=v), "capacity", 4, 8),
    "pb2.candidates": (lambda v: hj.pb2(SPACE, candidates=v), "candidates", 2, 8),
    "pb2.horizon": (lambda v: hj.pb2(SPACE, horizon=v), "horizon", 1, 50),
    "pb2.fit_steps": (lambda v: hj.pb2(SPACE, fit_steps=v), "fit_steps", 0, 3),
    "guard.warmup": (lambda v: hj.guard(hj.fixed(), warmup=v), "warmup", 0, 2),
    "guard.smoothing": (lambda v: hj.guard(hj.fixed(), smoothing=v), "smoothing", 1, 2),
    "guard.patience": (lambda v: hj.guard(hj.fixed(), patience=v), "patience", 1, 2),
    "guard.cooldown": (lambda v: hj.guard(hj.fixed(), cooldown=v), "cooldown", 0, 2),
    "guard.tune_every": (lambda v: hj.guard(hj.fixed(), tune_every=v), "tune_every", 1, 2),
    "population.init": (
        lambda v: hj.population.init(jax.random.key(0), v, lambda k: jnp.zeros(2)), "n", 1, 3
    ),
    "population.alive_mask": (lambda v: hj.population.alive_mask(v), "n", 1, 3),
    "population.prune": (lambda v: hj.population.prune(ALIVE, SCORES, v), "k", 0, 1),
    "population.spawn": (
        lambda v: hj.population.spawn({"w": jnp.arange(4.0)}, ALIVE, SCORES, v), "count", 0, 1
    ),
    "population.lineage_rows": (
        lambda v: hj.population.lineage_rows(hj.population.lineage(PROPOSAL, SCORES), v),
        "start",
        0,
        2,
    ),
    "ensemble.weights": (lambda v: hj.ensemble.weights(SCORES, window=v), "window", 1, 2),
    "ensemble.top_k": (lambda v: hj.ensemble.top_k(SCORES, v), "k", 1, 2),
    "gp.buffer.capacity": (lambda v: hj.gp.buffer(v, 1), "capacity", 2, 4),
    "gp.buffer.dim": (lambda v: hj.gp.buffer(4, v), "dim", 1, 2),
    "gp.fit": (lambda v: hj.gp.fit(hj.gp.buffer(4, 1), steps=v), "steps", 0, 0),
    "Space.sample": (lambda v: SPACE.sample(jax.random.key(0), v), "n", 1, 3),
    "MetaController": (lambda v: MetaController(max_spawns=v), "max_spawns", 0, 2),
    "MetaController.decide": (
        lambda v: MetaController().decide([0.5] * 3, spawns_used=v), "spawns_used", 0, 1
    ),
    "RegimeDetector": (lambda v: RegimeDetector(window=v), "window", 3, 5),
}


def bad_values(minimum):
    """Fractions, booleans (even where ``True == 1`` would pass), too small, not numbers."""
    return [
        2.5,
        minimum + 0.5,
        np.float32(minimum + 0.25),
        True,
        False,
        np.bool_(True),
        minimum - 1,
        "3",  # (None is not here: it means "all" or "one" where it is allowed)
        float("nan"),
        float("inf"),
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_non_integer_bool_and_too_small_values_are_refused_naming_the_argument(case):
    call, arg, minimum, _ = CASES[case]
    expected = re.escape(f"{arg} must be an integer >= {minimum}, got ")
    for value in bad_values(minimum):
        with pytest.raises(ValueError, match=expected):
            call(value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_whole_numbers_of_any_numeric_type_are_accepted(case):
    call, _, _, valid = CASES[case]
    for value in (valid, float(valid), np.int64(valid), np.float32(valid), jnp.int32(valid)):
        call(value)  # no error


def test_plateau_fractional_patience_is_refused():
    with pytest.raises(ValueError, match="plateau: patience must be an integer >= 1, got 2.5"):
        hj.plateau(patience=2.5, space=SPACE)


def test_whole_float_patience_behaves_as_the_integer():
    def lrs(patience):
        tuner = hj.plateau(patience=patience, factor=0.5)
        state = tuner.init(jax.random.key(0), {"learning_rate": 0.8})
        out = []
        for _ in range(6):
            p, state = tuner.update(state, hj.Observation(score=jnp.float32(0.0)))
            out.append(round(float(p.hparams["learning_rate"]), 6))
        return out

    assert lrs(2.0) == lrs(2) == [0.8, 0.8, 0.4, 0.4, 0.2, 0.2]


def test_refused_before_any_work():
    calls = []

    def init_member(key):
        calls.append(key)
        return jnp.zeros(2)

    with pytest.raises(ValueError, match="population.init: n"):
        hj.population.init(jax.random.key(0), 2.5, init_member)
    assert calls == []


def test_counts_inside_jit_may_be_traced_arrays():
    prune = jax.jit(hj.population.prune)
    assert prune(ALIVE, SCORES, jnp.int32(1)).tolist() == [False, False, True, True]
    spawn = jax.jit(hj.population.spawn)
    _, alive, parents = spawn({"w": jnp.arange(4.0)}, ALIVE, SCORES, jnp.int32(1))
    assert alive.all() and parents.tolist() == [0, 2, 2, 3]


def test_integer_returns_python_ints_and_names_where():
    assert integer("f: n", np.int64(3), 0) == 3 and type(integer("f: n", 3.0, 0)) is int
    with pytest.raises(ValueError, match=r"^f: n must be an integer >= 1, got True$"):
        integer("f: n", True, 1)
    assert integer("f: n", jnp.int32(2), 0) == 2  # a concrete scalar array is a number
    for value in (jnp.float32(2.5), jnp.zeros(2), jnp.array(True)):
        with pytest.raises(ValueError, match="f: n must be an integer >= 0"):
            integer("f: n", value, 0)
    with pytest.raises(ValueError, match="f: n must be an integer >= 0, got .*Tracer"):
        jax.jit(lambda k: integer("f: n", k, 0))(2)  # a traced value has no value yet
    array = jnp.int32(2)
    assert integer_or_array("f: n", array, 0) is array
    assert jax.jit(lambda k: integer_or_array("f: n", k, 0) + 1)(2) == 3
    assert integer_or_array("f: n", 2.0, 0) == 2
    with pytest.raises(ValueError, match="f: n"):
        integer_or_array("f: n", -1, 0)


@pytest.mark.parametrize("factory", [hj.pbt, hj.pb2])
def test_ready_is_windows_or_a_share_of_the_run_and_nothing_else(factory):
    for ok in (1, 3, 2.0, np.int64(4), jnp.int32(2), 0.15, np.float32(0.5), 0.999):
        factory(SPACE, ready=ok)  # no error
    name = factory.__name__
    for bad in (0, -1, 1.5, 2.5, np.float32(1.25), 0.0, -0.2, True, False, "3",
                float("nan"), float("inf")):
        with pytest.raises(ValueError, match=re.escape(
            f"{name}: ready must be an integer >= 1 (windows) or a share of the run in (0, 1)"
        )):
            factory(SPACE, ready=bad)
