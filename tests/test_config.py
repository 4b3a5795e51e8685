"""Config-driven tuning from dicts and YAML files."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj

YAML = textwrap.dedent(
    """
    space:
      learning_rate: [1e-4, 1e-1]
      weight_decay: {low: 1e-6, high: 1e-2, log: true}
      b1: {low: 0.8, high: 0.99}
      dropout_rate: [0.0, 0.5]
      batch_size: {choice: [32, 64, 128]}
      layers: {low: 1, high: 4, int: true}
    tuner:
      strategy: bayes
      candidates: 64
      radius: 0.1
      options:
        fit_steps: 5
    guard:
      max_delta: 0.25
      smoothing: 2
      tolerance: 0.1
      patience: 3
      cooldown: 4
      shrink: {learning_rate: 5e-1}
    schedule:
      tune_every: 2
      warmup: 3
    """
)


def python_equivalent():
    space = hj.Space(
        learning_rate=hj.LogUniform(1e-4, 1e-1),
        weight_decay=hj.LogUniform(1e-6, 1e-2),
        b1=hj.Uniform(0.8, 0.99),
        dropout_rate=hj.Uniform(0.0, 0.5),
        batch_size=hj.Choice([32, 64, 128]),
        layers=hj.IntUniform(1, 4),
    )
    tuner = hj.guard(
        hj.bayes(space, candidates=64, radius=0.1, fit_steps=5),
        warmup=3,
        max_delta=0.25,
        smoothing=2,
        tolerance=0.1,
        patience=3,
        cooldown=4,
        tune_every=2,
        space=space,
        shrink={"learning_rate": 0.5},
    )
    return space, tuner


def trajectory(tuner, space, windows=12):
    hp0 = {
        "learning_rate": 1e-3,
        "weight_decay": 1e-4,
        "b1": 0.9,
        "dropout_rate": 0.1,
        "batch_size": 64.0,
        "layers": 2.0,
    }
    state = tuner.init(jax.random.key(0), hp0)
    update = jax.jit(tuner.update)
    out = []
    for t in range(windows):
        score = jnp.float32(1.0 - 0.5**t) if t not in (7, 9) else jnp.float32(0.0)
        score = jnp.float32(jnp.nan) if t == 10 else score  # a divergence: shrink
        proposal, state = update(state, hj.Observation(score=score, horizon=windows))
        out.append(np.asarray(space.to_unit(proposal.hparams)))
        out.append(np.asarray(proposal.rollback, np.float32)[None])
    return np.concatenate(out)


def test_yaml_with_every_section_matches_the_python_call(tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text(YAML)
    config = hj.from_config(path)
    space, tuner = python_equivalent()
    assert config.space == space
    assert config.strategy == "bayes"
    assert dict(config.options) == {"candidates": 64, "radius": 0.1, "fit_steps": 5}
    assert dict(config.guard) == {
        "warmup": 3,
        "max_delta": 0.25,
        "smoothing": 2,
        "tolerance": 0.1,
        "patience": 3,
        "cooldown": 4,
        "tune_every": 2,
        "shrink": (("learning_rate", 0.5),),
    }
    np.testing.assert_array_equal(trajectory(config.build(), space), trajectory(tuner, space))
    # a dict gives the same config as the file
    import yaml  # noqa: F401  (test extra)

    assert hj.from_config(hj.config.load_yaml(path)) == config


def test_scientific_notation_and_ranges():
    loaded = hj.from_config(
        {"space": {"lr": ["1e-4", "1e-1"], "x": [0.2, 0.9]}, "tuner": {"strategy": "spsa"}}
    )
    assert loaded.space["lr"] == hj.LogUniform(1e-4, 1e-1)  # a range, not two choices
    assert loaded.space["x"] == hj.Uniform(0.2, 0.9)


def test_yaml_reads_exponents_without_a_dot_as_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1e-4\nb: 3E5\nc: -2.5e-3\nd: 1.0e-4\ne: text\nf: 12\n")
    data = hj.config.load_yaml(path)
    assert data == {"a": 1e-4, "b": 3e5, "c": -2.5e-3, "d": 1e-4, "e": "text", "f": 12}


def test_every_guard_and_schedule_option_takes_effect():
    base = {"space": {"lr": [1e-4, 1e-1]}, "tuner": {"strategy": "finite_difference"}}
    config = hj.from_config({**base, "schedule": {"tune_every": 3, "warmup": 1}})
    assert dict(config.guard) == {"tune_every": 3, "warmup": 1}
    tuner = config.build()
    state = tuner.init(jax.random.key(0), {"lr": 1e-3})
    lrs = []
    for _ in range(7):
        p, state = tuner.update(state, hj.Observation(score=jnp.float32(1.0)))
        lrs.append(float(p.hparams["lr"]))
    changes = [i for i in range(7) if lrs[i] != (lrs[i - 1] if i else 1e-3)]
    assert changes == [0, 3, 6]  # after windows 1, 4 and 7
    unguarded = hj.from_config({**base, "guard": False})
    assert unguarded.guard is None
    state = unguarded.build().init(jax.random.key(0), {"lr": 1e-3})
    assert isinstance(state, hj.FiniteDifferenceState)


def test_population_strategies_build_without_a_guard():
    config = hj.from_config(
        {
            "space": {"lr": [1e-4, 1e-1]},
            "tuner": {"strategy": "pbt", "fraction": 0.5, "perturb": [0.5, 2.0]},
        }
    )
    assert config.population and config.guard is None
    assert dict(config.options)["perturb"] == (0.5, 2.0)
    state = config.build().init(jax.random.key(0), {"lr": jnp.full((4,), 1e-3)})
    assert isinstance(state, hj.PBTState)


BASE = {"space": {"lr": [1e-4, 1e-1]}, "tuner": {"strategy": "bayes"}}


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"tuner": {"strategy": "hyperband"}}, "tuner.strategy"),
        ({"tuner": {}}, "tuner.strategy"),
        ({"tuner": {"strategy": "bayes", "temperature": 2}}, "tuner.temperature"),
        ({"tuner": {"strategy": "bayes", "radius": 2.0}}, "radius"),
        ({"guard": {"max_delta": 0.0}}, "guard.max_delta"),
        ({"guard": {"max_delta": 1.5}}, "guard.max_delta"),
        ({"guard": {"patience_windows": 2}}, "guard"),
        ({"guard": {"shrink": {"learning_rate": 1.5}}}, "guard.shrink.learning_rate"),
        ({"guard": {"shrink": 0.1}}, "guard.shrink"),
        ({"schedule": {"tune_every": 0}}, "schedule.tune_every"),
        ({"schedule": {"tune_every": -2}}, "schedule.tune_every"),
        ({"schedule": {"warmup": -1}}, "schedule.warmup"),
        ({"schedule": {"every": 2}}, "schedule"),
        ({"schedule": {"warmup": 2}, "guard": {"warmup": 3}}, "schedule.warmup"),
        ({"space": {"lr": [1e-1, 1e-4]}}, "lr"),
        ({"space": {"lr": [1e-4, 1e-3, 1e-2]}}, "space.lr"),
        ({"space": {"lr": {"low": 0.0, "high": 1.0, "log": True}}}, "lr"),
        ({"space": {"lr": {"low": 1.0}}}, "space.lr"),
        ({"space": {"lr": {"low": 0.1, "high": 1.0, "scale": "log"}}}, "space.lr"),
        ({"space": {"lr": {"choice": []}}}, "lr"),
        ({"space": {"lr": ["a", "b"]}}, "space.lr"),
        ({"space": {}}, "space"),
        ({"searcher": {}}, "config"),
        ({"tuner": {"strategy": "pbt"}, "guard": {"patience": 2}}, "guard"),
    ],
)
def test_invalid_input_names_the_key(patch, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        hj.from_config({**BASE, **patch})


@pytest.mark.parametrize(
    "spec, flag",
    [
        ({"low": 1e-4, "high": 1e-1, "log": "false"}, "log"),
        ({"low": 1e-4, "high": 1e-1, "log": 0}, "log"),
        ({"low": 1, "high": 4, "int": "no"}, "int"),
        ({"low": 0.1, "high": 0.9, "dynamic": "false"}, "dynamic"),
        ({"low": 1, "high": 4, "int": True, "dynamic": 1}, "dynamic"),
        ({"choice": [1, 2], "dynamic": "yes please"}, "dynamic"),
    ],
)
def test_range_flags_must_be_true_or_false(spec, flag):
    with pytest.raises(ValueError, match=rf"space\.x\.{flag}: expected true or false"):
        hj.from_config({"space": {"x": spec}, "tuner": {"strategy": "bayes"}})


def test_range_flags_given_as_booleans_take_effect():
    space = hj.from_config({
        "space": {
            "a": {"low": 1e-4, "high": 1e-1, "log": False},
            "b": {"low": 1e-4, "high": 1e-1, "log": True, "dynamic": False},
            "c": {"low": 1, "high": 4, "int": True, "dynamic": True},
            "d": {"choice": [1, 2], "dynamic": False},
        },
        "tuner": {"strategy": "bayes"},
    }).space
    assert space["a"] == hj.Uniform(1e-4, 1e-1, dynamic=True)
    assert space["b"] == hj.LogUniform(1e-4, 1e-1, dynamic=False)
    assert space["c"] == hj.IntUniform(1, 4, dynamic=True)
    assert space["d"] == hj.Choice([1, 2], dynamic=False)


def test_a_range_of_exactly_two_decades_is_logarithmic():
    config = hj.from_config({"space": {"lr": [1e-3, 1e-1], "x": [1.0, 99.0]},
                             "tuner": {"strategy": "fixed"}})
    assert type(config.space["lr"]).__name__ == "LogUniform"
    assert type(config.space["x"]).__name__ == "Uniform"
