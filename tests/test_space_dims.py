"""Search space dimensions: perturb moves, dynamic/structural, validation, hashing,
to_python. (Values through the unit cube: tests/test_space.py.)"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _support import FAST, HP, SPACE, f32  # noqa: E402
from hypothesis import given
from hypothesis import strategies as st

import hagfish_jax as hj

unit = st.floats(0.0, 1.0, allow_nan=False)


# ------------------------------------------------------------------ perturb
PSPACE = hj.Space(
    lg=hj.LogUniform(1e-4, 1.0),
    u=hj.Uniform(0.0, 1.0),
    i=hj.IntUniform(0, 100),
    c=hj.Choice([1, 2, 4, 8, 16]),
)
N = 256


def _interior_batch():
    k = jax.random.split(jax.random.key(11), 4)
    return {
        "lg": jnp.exp(jax.random.uniform(k[0], (N,), minval=math.log(1e-3), maxval=math.log(0.5))),
        "u": jax.random.uniform(k[1], (N,), minval=0.2, maxval=0.7),
        "i": jax.random.randint(k[2], (N,), 5, 60).astype(jnp.float32),
        "c": jnp.asarray([2.0, 4.0, 8.0, 4.0] * (N // 4)),
    }


def test_perturb_log_dims_multiply_exactly():
    hp = _interior_batch()
    for factors in [(0.8, 1.25), (0.5, 2.0)]:
        out = np.asarray(PSPACE.perturb(jax.random.key(0), hp, factors)["lg"])
        x = np.asarray(hp["lg"])
        lo, hi = x * f32(factors[0]), x * f32(factors[1])
        assert np.all((out == lo) | (out == hi))
        # both factors are used
        assert 0.2 < np.mean(out == hi) < 0.8


def test_perturb_log_dim_clipped_at_bounds():
    space = hj.Space(lg=hj.LogUniform(1e-4, 1.0))
    out = np.asarray(space.perturb(jax.random.key(0), {"lg": jnp.full((64,), 0.95)})["lg"])
    assert set(out.tolist()) == {1.0, float(f32(0.95) * f32(0.8))}
    out = np.asarray(space.perturb(jax.random.key(0), {"lg": jnp.full((64,), 1.1e-4)})["lg"])
    assert out.min() == f32(1e-4)


def test_perturb_uniform_dims_follow_rule():
    hp = _interior_batch()
    out = np.asarray(PSPACE.perturb(jax.random.key(1), hp)["u"], np.float64)
    x = np.asarray(hp["u"], np.float64)
    scale = np.maximum(np.abs(x), 0.05)
    cands = [x + (f - 1.0) * scale for f in (0.8, 1.25)]
    hit = [np.isclose(out, c, atol=1e-6) for c in cands]
    assert np.all(hit[0] | hit[1])
    assert hit[0].any() and hit[1].any()
    # a value at zero still moves thanks to the floor
    sym = hj.Space(u=hj.Uniform(-1.0, 1.0))
    z = np.asarray(sym.perturb(jax.random.key(2), {"u": jnp.zeros(32)})["u"])
    assert np.all(np.isclose(z, -0.02) | np.isclose(z, 0.025))
    assert np.any(z < 0) and np.any(z > 0)


def test_perturb_ints_move_at_least_one_step():
    hp = _interior_batch()
    out = np.asarray(PSPACE.perturb(jax.random.key(3), hp)["i"])
    x = np.asarray(hp["i"])
    assert np.all(np.abs(out - x) >= 1)
    assert np.all(out == np.round(out))
    assert np.all((out >= 0) & (out <= 100))
    # small values where x * f rounds back to x still move one step
    small = {"i": jnp.full((64,), 2.0)}
    out = np.asarray(PSPACE.perturb(jax.random.key(4), small)["i"])
    assert set(out.tolist()) == {1.0, 3.0}
    # at the top bound, a move up is clipped back
    top = np.asarray(PSPACE.perturb(jax.random.key(5), {"i": jnp.full((64,), 100.0)})["i"])
    assert set(top.tolist()) <= {80.0, 100.0} and 100.0 in top.tolist()


def test_perturb_choices_move_to_neighbour():
    table = [1.0, 2.0, 4.0, 8.0, 16.0]
    hp = _interior_batch()
    out = np.asarray(PSPACE.perturb(jax.random.key(6), hp)["c"])
    idx_in = np.array([table.index(v) for v in np.asarray(hp["c"]).tolist()])
    idx_out = np.array([table.index(v) for v in out.tolist()])
    assert np.all(np.abs(idx_out - idx_in) == 1)
    assert (idx_out > idx_in).any() and (idx_out < idx_in).any()
    # ends stay inside the table
    ends = np.asarray(PSPACE.perturb(jax.random.key(7), {"c": f32([1.0, 16.0] * 16)})["c"])
    assert set(ends.tolist()) <= {1.0, 2.0, 8.0, 16.0}


def test_perturb_deterministic_and_partial():
    hp = {"lg": 0.01, "i": 10.0}
    a = PSPACE.perturb(jax.random.key(0), hp)
    b = PSPACE.perturb(jax.random.key(0), hp)
    assert set(a) == {"lg", "i"}
    chex.assert_shape(list(a.values()), ())
    chex.assert_type(list(a.values()), jnp.float32)
    chex.assert_trees_all_equal(a, b)


@FAST
@given(
    us=st.lists(unit, min_size=5, max_size=5),
    seed=st.integers(0, 2**31 - 1),
    f0=st.floats(0.05, 1.0),
    f1=st.floats(1.0, 20.0),
)
def test_perturb_stays_inside(us, seed, f0, f1):
    hp = SPACE.from_unit(f32(us))
    out = SPACE.perturb(jax.random.key(seed), hp, (f0, f1))
    assert sorted(out) == sorted(SPACE.names)
    assert SPACE.contains(out)


@pytest.mark.parametrize(
    "factors",
    [(0.8,), (0.8, 1.25, 2.0), (0.0, 1.25), (-0.5, 2.0), (0.8, float("nan")), (0.8, float("inf"))],
)
def test_perturb_factor_validation(factors):
    with pytest.raises(ValueError, match="factors"):
        SPACE.perturb(jax.random.key(0), HP, factors)


# ------------------------------------------------------------------ dynamic / structural
def test_dynamic_and_structural_defaults():
    assert SPACE.dynamic == frozenset({"lr", "b1"})
    assert SPACE.structural == frozenset({"bs", "layers", "opt"})
    assert SPACE.subspace(SPACE.dynamic).names == ("b1", "lr")


def test_dynamic_overrides():
    space = hj.Space(
        a=hj.Uniform(0.0, 1.0, dynamic=False),
        b=hj.LogUniform(1e-3, 1.0, dynamic=False),
        c=hj.IntUniform(1, 3, dynamic=True),
        d=hj.Choice([0.1, 0.2], dynamic=True),
        e=hj.Uniform(0.0, 1.0),
    )
    assert space.dynamic == frozenset({"c", "d", "e"})
    assert space.structural == frozenset({"a", "b"})
    assert space.dynamic | space.structural == set(space.names)


def test_a_non_numeric_choice_may_be_dynamic_and_moves_by_index():
    """A task that reads the index inside jit (the classification optimizer) may let
    tuners move a choice of names; it is carried as its index."""
    dim = hj.Choice(["adam", "sgd"], dynamic=True)
    space = hj.Space(optimizer=dim, lr=hj.LogUniform(1e-3, 1.0))
    assert space.dynamic == frozenset({"optimizer", "lr"})
    idx = jnp.asarray([0.0, 1.0], jnp.float32)
    np.testing.assert_allclose(dim.to_unit(idx), [0.25, 0.75])
    np.testing.assert_array_equal(dim.from_unit(jnp.asarray([0.0, 0.49, 0.5, 1.0])), [0, 0, 1, 1])
    np.testing.assert_array_equal(dim.clip(jnp.asarray([-3.0, 0.4, 0.6, 7.0])), [0, 0, 1, 1])
    np.testing.assert_array_equal(dim.perturb(idx, jnp.asarray([1.2, 0.8])), [1.0, 0.0])
    assert dim.to_python(1.0) == "sgd" and dim.to_python(0.0) == "adam"
    assert space.to_python({"optimizer": 1.0})["optimizer"] == "sgd"
    assert space.contains({"optimizer": 1.0}) and not space.contains({"optimizer": 0.5})
    hp = space.sample(jax.random.key(0), 64)
    assert set(np.unique(np.asarray(hp["optimizer"]))) == {0.0, 1.0}


# ------------------------------------------------------------------ validation
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "dim",
    [
        lambda: hj.Uniform(1.0, 0.0),
        lambda: hj.Uniform(1.0, 1.0),
        lambda: hj.Uniform(NAN, 1.0),
        lambda: hj.Uniform(0.0, NAN),
        lambda: hj.Uniform(-INF, 0.0),
        lambda: hj.Uniform(0.0, INF),
        lambda: hj.Uniform("low", 1.0),
        lambda: hj.Uniform(None, 1.0),
        lambda: hj.LogUniform(0.0, 1.0),
        lambda: hj.LogUniform(-1.0, 1.0),
        lambda: hj.LogUniform(-2.0, -1.0),
        lambda: hj.LogUniform(1.0, 1.0),
        lambda: hj.LogUniform(1.0, 0.1),
        lambda: hj.LogUniform(1e-3, INF),
        lambda: hj.LogUniform(NAN, 1.0),
        lambda: hj.IntUniform(0.5, 3),
        lambda: hj.IntUniform(1, 3.5),
        lambda: hj.IntUniform(3, 3),
        lambda: hj.IntUniform(4, 1),
        lambda: hj.IntUniform(NAN, 3),
        lambda: hj.IntUniform(0, INF),
        lambda: hj.Choice([]),
        lambda: hj.Choice([1, 2, 1]),
        lambda: hj.Choice(["a", "b", "a"]),
        lambda: hj.Choice([1.0, INF]),
        lambda: hj.Choice([NAN, 1.0]),
    ],
    ids=lambda make: str(make.__code__.co_firstlineno),
)
def test_invalid_dimension_fails_at_construction_naming_its_kind(dim):
    with pytest.raises(ValueError, match="Uniform|LogUniform|IntUniform|Choice"):
        dim()


@pytest.mark.parametrize("value", [0.5, (0.0, 1.0), "uniform", None, hj.Dimension()], ids=repr)
def test_non_dimension_value_names_it(value):
    with pytest.raises(ValueError, match="my_dim"):
        hj.Space(my_dim=value)


def test_empty_space_raises():
    with pytest.raises(ValueError):
        hj.Space()


@pytest.mark.parametrize("method", ["clip", "to_unit", "perturb"])
def test_unknown_names_raise(method):
    hp = {**HP, "bogus_name": 0.5}
    call = {
        "clip": lambda: SPACE.clip(hp),
        "to_unit": lambda: SPACE.to_unit(hp),
        "perturb": lambda: SPACE.perturb(jax.random.key(0), hp),
    }[method]
    with pytest.raises(ValueError, match="bogus_name"):
        call()


def test_to_unit_missing_name_raises():
    hp = dict(HP)
    del hp["layers"]
    with pytest.raises(ValueError, match="layers"):
        SPACE.to_unit(hp)


def test_subspace_unknown_name_raises():
    with pytest.raises(ValueError, match="nope"):
        SPACE.subspace(["lr", "nope"])


@pytest.mark.parametrize("shape", [(), (4,), (6,), (3, 4), (2, 1)])
def test_from_unit_wrong_last_axis_raises(shape):
    with pytest.raises(ValueError, match="last axis"):
        SPACE.from_unit(jnp.full(shape, 0.5))


# ------------------------------------------------------------------ hashing, to_python
def test_space_hashable_and_equal():
    a = hj.Space(x=hj.Uniform(0.0, 1.0), c=hj.Choice(["p", "q"]), n=hj.IntUniform(1, 3))
    b = hj.Space(n=hj.IntUniform(1, 3), c=hj.Choice(("p", "q")), x=hj.Uniform(0.0, 1.0))
    c = hj.Space(x=hj.Uniform(0.0, 2.0), c=hj.Choice(["p", "q"]), n=hj.IntUniform(1, 3))
    d = hj.Space(x=hj.LogUniform(0.5, 1.0), c=hj.Choice(["p", "q"]), n=hj.IntUniform(1, 3))
    assert a == b and hash(a) == hash(b)
    assert a != c and a != d
    assert len({a, b, c, d}) == 3
    assert {a: 1}[b] == 1


def test_space_as_jit_static_arg_does_not_retrace():
    chex.clear_trace_counter()

    @chex.assert_max_traces(n=1)
    def f(space, u):
        return space.from_unit(u)

    jf = jax.jit(f, static_argnums=0)
    s1 = hj.Space(x=hj.Uniform(0.0, 1.0), y=hj.LogUniform(1e-3, 1.0))
    s2 = hj.Space(y=hj.LogUniform(1e-3, 1.0), x=hj.Uniform(0.0, 1.0))
    jf(s1, jnp.full((2,), 0.5))
    jf(s2, jnp.full((2,), 0.25))  # an equal space: the cached trace
    # A different space is a different static argument: it traces again.
    s3 = hj.Space(x=hj.Uniform(0.0, 4.0), y=hj.LogUniform(1e-3, 1.0))
    with pytest.raises(AssertionError, match="traced > 1 times"):
        jf(s3, jnp.full((2,), 0.5))
    chex.clear_trace_counter()
    assert float(jf(s3, jnp.full((2,), 0.5))["x"]) == 2.0


def test_to_python_types():
    sentinel = object()
    space = hj.Space(
        f=hj.Uniform(0.0, 1.0),
        n=hj.IntUniform(1, 8),
        bs=hj.Choice([16, 32, 64]),
        act=hj.Choice(["relu", None, sentinel]),
    )
    hp = {"f": jnp.float32(0.25), "n": jnp.float32(3.0), "bs": jnp.float32(32.0), "act": 2.0}
    py = space.to_python(hp)
    assert py["f"] == 0.25 and type(py["f"]) is float
    assert py["n"] == 3 and type(py["n"]) is int
    assert py["bs"] == 32 and type(py["bs"]) is int
    assert py["act"] is sentinel
    assert space.to_python({"act": 1.0})["act"] is None
    assert space.to_python({"n": 2.9999})["n"] == 3
    # an index outside the list reads as the nearest choice, not a wrapped or missing one
    assert space.to_python({"act": -1.0})["act"] == "relu"
    assert space.to_python({"act": 7.0})["act"] is sentinel


@pytest.mark.parametrize("low, high", [(0, 2), (1, 4), (-3, 3)])
def test_int_uniform_samples_every_integer_equally(low, high):
    space = hj.Space(n=hj.IntUniform(low, high))
    draws = np.asarray(space.sample(jax.random.key(0), 30_000)["n"])
    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == list(range(low, high + 1))  # the ends included
    share = counts / draws.size
    np.testing.assert_allclose(share, 1.0 / (high - low + 1), atol=0.015)
    # each integer sits at the centre of its bin: the unit round trip is exact
    k = jnp.arange(low, high + 1, dtype=jnp.float32)
    np.testing.assert_array_equal(space.from_unit(space.to_unit({"n": k}))["n"], k)




@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: hj.Uniform(-1e39, 1e39), "float32"),
        (lambda: hj.Uniform(-3e38, 3e38), "high - low"),
        (lambda: hj.LogUniform(1, 1e39), "float32"),
        (lambda: hj.LogUniform(1e-45, 1), "float32"),
        (lambda: hj.Uniform(float("nan"), 1), "finite"),
        (lambda: hj.Uniform(0, float("inf")), "finite"),
        (lambda: hj.Uniform("0.1", 1), "real number"),
        (lambda: hj.Uniform(True, 2), "real number"),
        (lambda: hj.Choice("abc"), "not the string"),
        (lambda: hj.IntUniform(0, 2**40), "2\\*\\*24"),
        (lambda: hj.Space(lr=hj.Uniform(0, 1)).sample(jax.random.key(0), -1), "n must be"),
    ],
)
def test_bad_dimensions_fail_at_construction_with_a_clear_message(make, words):
    with pytest.raises(ValueError, match=words):
        make()
    # and every accepted dimension samples finite values
    for dim in (hj.Uniform(-1e30, 1e30), hj.LogUniform(1e-30, 1e30), hj.IntUniform(0, 2**24)):
        samples = hj.Space(x=dim).sample(jax.random.key(1), 64)["x"]
        assert bool(jnp.all(jnp.isfinite(samples)))
