"""Config fuzzing: every input is either accepted and builds a working tuner, or refused
with a ValueError/TypeError that names the offending key (hypothesis)."""

from __future__ import annotations

import math

import jax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hagfish_jax as hj

yaml = pytest.importorskip("yaml")

ODD = st.one_of(
    st.integers(-5, 2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-4, 0.5, 3.0, 1e16, -1.0, 0.0, True, None, "x", "1e-3", [], [1], {}]),
)
SPEC = st.one_of(
    st.lists(ODD, min_size=0, max_size=3),
    st.fixed_dictionaries({"low": ODD, "high": ODD}, optional={"log": ODD, "int": ODD}),
    st.fixed_dictionaries({"choice": st.one_of(ODD, st.lists(ODD, max_size=3))}),
    ODD,
)
NAMES = st.sampled_from(["learning_rate", "b1", "weight_decay", "lr2"])
OPTIONS = st.dictionaries(
    st.sampled_from(["candidates", "horizon", "delta", "step", "fraction", "ready", "names",
                     "capacity", "refit_every", "perturb", "bogus", "options"]),
    st.one_of(ODD, st.lists(st.one_of(ODD, NAMES), max_size=3)),
    max_size=3,
)
PLAUSIBLE = st.fixed_dictionaries(
    {
        "space": st.dictionaries(NAMES, st.sampled_from([[1e-4, 1e-1], [0.0, 0.5],
                                                         {"low": 1, "high": 8, "int": True}]),
                                 min_size=1, max_size=2),
        "tuner": st.fixed_dictionaries(
            {"strategy": st.sampled_from(["fixed", "plateau", "finite_difference", "spsa",
                                          "bayes", "pbt", "pb2"])},
        ).flatmap(lambda t: st.dictionaries(
            st.sampled_from(["candidates", "horizon", "fraction", "ready", "delta"]),
            st.sampled_from([1, 2, 8, 0.25, 0.5, 2.5, 100]), max_size=1,
        ).map(lambda o: {**t, **o})),
    },
    optional={"guard": st.dictionaries(st.sampled_from(["warmup", "patience", "max_delta"]),
                                       st.sampled_from([0, 1, 2, 0.5, 1.5]), max_size=2)},
)
WILD = st.fixed_dictionaries(
    {
        "space": st.one_of(
            st.dictionaries(st.one_of(NAMES, st.integers(0, 3)), SPEC, min_size=1, max_size=2),
            st.dictionaries(NAMES, st.just([1e-4, 1e-1]), min_size=1, max_size=2),
            ODD,
        ),
        "tuner": st.one_of(
            st.fixed_dictionaries(
                {"strategy": st.one_of(
                    st.sampled_from(["fixed", "plateau", "finite_difference", "spsa", "bayes",
                                     "pbt", "pb2"]), ODD, st.just(["bayes"]))},
                optional={"options": st.one_of(OPTIONS, ODD)},
            ).flatmap(lambda t: OPTIONS.map(lambda o: {**t, **o})),
            ODD,
        ),
    },
    optional={
        "guard": st.one_of(st.dictionaries(
            st.sampled_from(["warmup", "max_delta", "smoothing", "tolerance", "patience",
                             "cooldown", "tune_every", "shrink", "bogus"]), ODD, max_size=3),
            st.just(False), ODD),
        "schedule": st.one_of(st.dictionaries(
            st.sampled_from(["tune_every", "warmup", "bogus"]), ODD, max_size=2), ODD),
    },
)


CONFIG = st.one_of(PLAUSIBLE, WILD)


def keys_of(tree, out=None):
    """Every key (and section name) that appears in a config, as text."""
    out = set() if out is None else out
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.add(str(k))
            keys_of(v, out)
    return out


def check(config):
    try:
        built = hj.from_config(config)
        tuner = built.build()
    except (ValueError, TypeError) as err:
        message = str(err)
        named = {k for k in keys_of(config) if k in message}
        assert named or message.startswith(("config", "space", "tuner")), message
        return
    # accepted: a working tuner over its space
    n = 4 if built.population else None
    hp = built.space.sample(jax.random.key(0), n)
    state = tuner.init(jax.random.key(1), hp)
    assert state is not None
    assert all(math.isfinite(float(v.ravel()[0])) for v in jax.tree.leaves(hp))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIG)
def test_any_config_dict_is_accepted_or_refused_naming_its_key(config):
    check(config)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIG)
def test_any_yaml_config_is_accepted_or_refused_naming_its_key(tmp_path_factory, config):
    path = tmp_path_factory.mktemp("yaml") / "tune.yaml"
    try:
        path.write_text(yaml.safe_dump(config))
    except yaml.YAMLError:
        return
    check(yaml.safe_load(path.read_text()))
    try:
        built = hj.from_config(path)
    except (ValueError, TypeError) as err:
        assert keys_of(config) & set(str(err).replace(":", " ").replace(".", " ").split()) or \
            str(err).startswith(("config", "space", "tuner")), str(err)
        return
    assert built.build() is not None


@pytest.mark.parametrize(
    "text, key",
    [
        ("space: {learning_rate: [1e-4, 1e-1]}\ntuner: {strategy: finite_difference}\n"
         "guard: {warmup: .inf}\n", "guard.warmup"),
        ("space: {learning_rate: [1e-4, 1e-1]}\ntuner: {strategy: finite_difference}\n"
         "guard: {warmup: .nan}\n", "guard.warmup"),
        ("space: {learning_rate: [1e-4, 1e-1]}\ntuner: {strategy: [bayes]}\n", "tuner.strategy"),
        ("space: {1: [1e-4, 1e-1]}\ntuner: {strategy: fixed}\n", "space"),
        ("space: {learning_rate: [1e-4, 1e-1]}\ntuner: {strategy: spsa, names: 962}\n",
         "tuner.names"),
        ("space: {learning_rate: [1e-4, 1e-1]}\ntuner: {strategy: spsa, options: [1, 2]}\n",
         "tuner.options"),
        ("space: {learning_rate: [1e-4, 1e-1]}\ntuner: {strategy: pb2, candidates: 5.8e16}\n",
         "tuner.candidates"),
    ],
)
def test_the_reported_configs_are_refused_naming_their_key(tmp_path, text, key):
    path = tmp_path / "tune.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=key.replace(".", "\\.")):
        hj.from_config(path)
