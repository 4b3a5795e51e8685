"""Search space values through the unit cube: round trips, sampling, to_unit, clip,
jit/vmap. (Per-dimension rules, perturb and validation: tests/test_space_dims.py.)"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _support import FAST, HP, SPACE, f32  # noqa: E402
from hypothesis import given
from hypothesis import strategies as st

import hagfish_jax as hj


def roundtrip(space, hp):
    return space.from_unit(space.to_unit(hp))


# Batch sizes are drawn from a few fixed values so eager ops do not compile per example.
unit = st.floats(0.0, 1.0, allow_nan=False)
batch_units = st.sampled_from([1, 3, 8]).flatmap(lambda n: st.lists(unit, min_size=n, max_size=n))


# ------------------------------------------------------------------ round trips
@FAST
@given(
    low=st.floats(-1e3, 1e3).filter(lambda x: x == 0.0 or abs(x) >= 1e-30),
    width=st.floats(1e-2, 1e3),
    us=batch_units,
)
def test_uniform_round_trip(low, width, us):
    high = low + width
    space = hj.Space(x=hj.Uniform(low, high))
    xs = np.clip(f32([low + u * width for u in us]), f32(low), f32(high))
    atol = 4e-6 * max(abs(low), abs(high), width)
    back = roundtrip(space, {"x": xs[0]})["x"]
    assert back.shape == () and back.dtype == jnp.float32
    np.testing.assert_allclose(back, xs[0], rtol=0, atol=atol)
    back = roundtrip(space, {"x": xs})["x"]
    assert back.shape == xs.shape and back.dtype == jnp.float32
    np.testing.assert_allclose(back, xs, rtol=0, atol=atol)


@FAST
@given(lo_exp=st.floats(-8.0, 2.0), decades=st.floats(0.5, 8.0), us=batch_units)
def test_loguniform_round_trip(lo_exp, decades, us):
    low, high = 10.0**lo_exp, 10.0 ** (lo_exp + decades)
    space = hj.Space(x=hj.LogUniform(low, high))
    xs = np.clip(f32([10.0 ** (lo_exp + u * decades) for u in us]), f32(low), f32(high))
    back = roundtrip(space, {"x": xs[0]})["x"]
    assert back.shape == () and back.dtype == jnp.float32
    np.testing.assert_allclose(back, xs[0], rtol=1e-5)
    back = roundtrip(space, {"x": xs})["x"]
    assert back.shape == xs.shape
    np.testing.assert_allclose(back, xs, rtol=1e-5)


@FAST
@given(low=st.integers(-1000, 1000), width=st.integers(1, 2000), data=st.data())
def test_intuniform_round_trip_exact(low, width, data):
    high = low + width
    space = hj.Space(n=hj.IntUniform(low, high))
    n = data.draw(st.sampled_from([1, 3, 8]))
    xs = data.draw(st.lists(st.integers(low, high), min_size=n, max_size=n))
    back = roundtrip(space, {"n": float(xs[0])})["n"]
    assert back.shape == () and float(back) == xs[0]
    back = roundtrip(space, {"n": f32(xs)})["n"]
    np.testing.assert_array_equal(back, f32(xs))
    assert space.to_python({"n": back[0]})["n"] == xs[0]


numeric_choices = st.lists(
    st.one_of(
        st.integers(-10_000, 10_000),
        st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_subnormal=False),
    ),
    min_size=1,
    max_size=8,
    unique=True,
)


@FAST
@given(values=numeric_choices, data=st.data())
def test_numeric_choice_round_trip_exact(values, data):
    # Distinct Python values that collide in float32 would make the value ambiguous.
    if len(set(f32(values).tolist())) != len(values):
        return
    space = hj.Space(c=hj.Choice(values))
    n = data.draw(st.sampled_from([1, 3, 8]))
    picks = data.draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    back = roundtrip(space, {"c": picks[0]})["c"]
    assert back.shape == () and back == f32(picks[0])
    back = roundtrip(space, {"c": f32(picks)})["c"]
    np.testing.assert_array_equal(back, f32(picks))
    # to_python gives the original object back (an int stays an int).
    got = space.to_python({"c": back[0]})["c"]
    assert got == picks[0] and type(got) is type(picks[0])


@FAST
@given(values=st.lists(st.text(max_size=5), min_size=1, max_size=8, unique=True), data=st.data())
def test_string_choice_round_trip_exact(values, data):
    space = hj.Space(c=hj.Choice(values))
    n = data.draw(st.sampled_from([1, 3, 8]))
    idx = data.draw(st.lists(st.integers(0, len(values) - 1), min_size=n, max_size=n))
    back = roundtrip(space, {"c": float(idx[0])})["c"]
    assert back.shape == () and float(back) == idx[0]
    back = roundtrip(space, {"c": f32(idx)})["c"]
    np.testing.assert_array_equal(back, f32(idx))
    assert space.to_python({"c": back[0]})["c"] == values[idx[0]]


@FAST
@given(us=st.lists(unit, min_size=5, max_size=5))
def test_mixed_space_from_unit_to_unit_is_idempotent(us):
    hp = SPACE.from_unit(f32(us))
    chex.assert_trees_all_close(roundtrip(SPACE, hp), hp, rtol=1e-5)


# ------------------------------------------------------------------ sampling
def _check_inside(hp, n=None):
    shape = () if n is None else (n,)
    assert sorted(hp) == sorted(SPACE.names)
    for v in hp.values():
        assert v.shape == shape and v.dtype == jnp.float32
    assert SPACE.contains(hp)
    lr, b1 = np.asarray(hp["lr"]), np.asarray(hp["b1"])
    assert np.all((lr >= 1e-5 * (1 - 1e-6)) & (lr <= 1e-1 * (1 + 1e-6)))
    assert np.all((b1 >= f32(0.8)) & (b1 <= f32(0.99)))
    assert set(np.atleast_1d(hp["bs"]).tolist()) <= {16.0, 32.0, 64.0, 128.0}
    assert set(np.atleast_1d(hp["layers"]).tolist()) <= {1.0, 2.0, 3.0, 4.0}
    assert set(np.atleast_1d(hp["opt"]).tolist()) <= {0.0, 1.0, 2.0}


def test_sample_scalar():
    _check_inside(SPACE.sample(jax.random.key(0)))


def test_sample_batch_covers_space():
    hp = SPACE.sample(jax.random.key(1), 64)
    _check_inside(hp, 64)
    lr = np.asarray(hp["lr"])
    # log-uniform: several decades are visited, not just the top one
    assert lr.min() < 1e-4 and lr.max() > 1e-2
    assert len(set(hp["layers"].tolist())) == 4
    assert len(set(hp["bs"].tolist())) == 4
    assert len(set(hp["opt"].tolist())) == 3
    assert len(set(hp["b1"].tolist())) > 32


def test_sample_deterministic_per_key():
    a = SPACE.sample(jax.random.key(3), 16)
    b = SPACE.sample(jax.random.key(3), 16)
    c = SPACE.sample(jax.random.key(4), 16)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a["lr"], c["lr"])
    assert not np.array_equal(a["b1"], c["b1"])
    s1, s2 = SPACE.sample(jax.random.key(5)), SPACE.sample(jax.random.key(6))
    assert float(s1["lr"]) != float(s2["lr"])


def test_contains_rejects_outside_values():
    assert SPACE.contains(HP)
    assert not SPACE.contains({**HP, "lr": 0.5})
    assert not SPACE.contains({**HP, "b1": 0.5})
    assert not SPACE.contains({**HP, "bs": 48.0})
    assert not SPACE.contains({**HP, "layers": 5.0})
    assert not SPACE.contains({**HP, "layers": 2.5})
    assert not SPACE.contains({**HP, "opt": 3.0})
    assert not SPACE.contains({**HP, "unknown": 1.0})


# ------------------------------------------------------------------ to_unit
def test_to_unit_shape_range_and_order():
    space = hj.Space(z=hj.Uniform(0.0, 2.0), a=hj.LogUniform(1e-4, 1.0), m=hj.IntUniform(0, 10))
    assert space.names == ("a", "m", "z")
    u = space.to_unit({"z": 2.0, "a": 1e-4, "m": 5.0})
    assert u.shape == (3,) and u.dtype == jnp.float32
    np.testing.assert_allclose(u, [0.0, 0.5, 1.0], atol=1e-6)
    u = space.to_unit({"z": 0.5, "a": 1e-2, "m": 0.0})  # an integer: its bin's centre
    np.testing.assert_allclose(u, [0.5, 0.5 / 11, 0.25], atol=1e-6)
    hp = space.sample(jax.random.key(0), 7)
    ub = space.to_unit(hp)
    assert ub.shape == (7, 3)
    assert np.all((np.asarray(ub) >= 0) & (np.asarray(ub) <= 1))
    for i, n in enumerate(space.names):
        np.testing.assert_allclose(ub[:, i], space.subspace([n]).to_unit({n: hp[n]})[:, 0])


def test_to_unit_clips_out_of_range_into_unit_cube():
    u = np.asarray(SPACE.to_unit({"lr": 10.0, "b1": -5.0, "bs": 1e4, "layers": -3.0, "opt": 9.0}))
    assert np.all((u >= 0) & (u <= 1))
    names = SPACE.names
    assert u[names.index("lr")] == 1.0 and u[names.index("b1")] == 0.0
    assert u[names.index("layers")] == 0.0


def test_choice_unit_slots_are_centred():
    space = hj.Space(c=hj.Choice(["a", "b", "c", "d"]))
    u = space.to_unit({"c": f32([0, 1, 2, 3])})
    np.testing.assert_allclose(u[:, 0], [0.125, 0.375, 0.625, 0.875])
    back = space.from_unit(f32([[0.0], [0.2499], [0.25], [0.9999], [1.0]]))["c"]
    np.testing.assert_array_equal(back, [0, 0, 1, 3, 3])


# ------------------------------------------------------------------ clip
def test_clip_bounds_rounds_and_snaps():
    space = hj.Space(
        u=hj.Uniform(-1.0, 1.0),
        lg=hj.LogUniform(1e-3, 1e-1),
        i=hj.IntUniform(1, 4),
        c=hj.Choice([16, 32, 64, 128]),
        s=hj.Choice(["x", "y", "z"]),
    )
    hp = {
        "u": f32([-3.0, 0.25, 7.0]),
        "lg": f32([0.0, 1e-2, 5.0]),
        "i": f32([2.4, 2.6, 10.0]),
        "c": f32([40.0, 50.0, 1000.0]),
        "s": f32([1.4, -2.0, 7.0]),
    }
    out = space.clip(hp)
    chex.assert_shape(list(out.values()), (3,))
    chex.assert_type(list(out.values()), jnp.float32)
    np.testing.assert_array_equal(out["u"], f32([-1.0, 0.25, 1.0]))
    np.testing.assert_array_equal(out["lg"], f32([1e-3, 1e-2, 1e-1]))
    np.testing.assert_array_equal(out["i"], f32([2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(out["c"], f32([32.0, 64.0, 128.0]))
    np.testing.assert_array_equal(out["s"], f32([1.0, 0.0, 2.0]))
    assert float(space.clip({"i": -3.0})["i"]) == 1.0
    assert float(space.clip({"c": 0.0})["c"]) == 16.0
    # partial dicts are fine: only the given names come back
    assert set(space.clip({"u": 0.0})) == {"u"}


@FAST
@given(
    vals=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=5, max_size=5),
)
def test_clip_always_lands_inside(vals):
    hp = dict(zip(SPACE.names, vals, strict=True))
    out = SPACE.clip(hp)
    assert SPACE.contains(out)
    chex.assert_trees_all_equal(SPACE.clip(out), out)  # clipping is idempotent


# ------------------------------------------------------------------ jit and vmap
@pytest.fixture(scope="module")
def jitted():
    return {
        "to_unit": jax.jit(SPACE.to_unit),
        "from_unit": jax.jit(SPACE.from_unit),
        "clip": jax.jit(SPACE.clip),
        "perturb": jax.jit(SPACE.perturb),
        "v_to_unit": jax.jit(jax.vmap(SPACE.to_unit)),
        "v_from_unit": jax.jit(jax.vmap(SPACE.from_unit)),
        "v_clip": jax.jit(jax.vmap(SPACE.clip)),
        "v_perturb": jax.jit(jax.vmap(SPACE.perturb)),
    }


def _assert_hp_equal(a, b, rtol=0.0):
    """Same names, shapes and dtypes; values equal (``rtol=0``) or close."""
    chex.assert_trees_all_equal_shapes_and_dtypes(a, b)
    if rtol:
        chex.assert_trees_all_close(a, b, rtol=rtol)
    else:
        chex.assert_trees_all_equal(a, b)


def test_jit_matches_eager(jitted):
    hp = SPACE.sample(jax.random.key(0), 8)
    np.testing.assert_allclose(jitted["to_unit"](hp), SPACE.to_unit(hp), rtol=1e-6)
    u = jax.random.uniform(jax.random.key(1), (8, len(SPACE)))
    _assert_hp_equal(jitted["from_unit"](u), SPACE.from_unit(u), rtol=1e-6)
    wild = {n: v * 3.0 - 1.0 for n, v in hp.items()}
    _assert_hp_equal(jitted["clip"](wild), SPACE.clip(wild))
    _assert_hp_equal(jitted["perturb"](jax.random.key(2), hp), SPACE.perturb(jax.random.key(2), hp))


def test_vmap_matches_batched(jitted):
    hp = SPACE.sample(jax.random.key(3), 8)
    np.testing.assert_allclose(jitted["v_to_unit"](hp), SPACE.to_unit(hp), rtol=1e-6)
    u = jax.random.uniform(jax.random.key(4), (8, len(SPACE)))
    _assert_hp_equal(jitted["v_from_unit"](u), SPACE.from_unit(u), rtol=1e-6)
    wild = {n: v * 3.0 - 1.0 for n, v in hp.items()}
    _assert_hp_equal(jitted["v_clip"](wild), SPACE.clip(wild))
    keys = jax.random.split(jax.random.key(5), 8)
    out = jitted["v_perturb"](keys, hp)
    assert SPACE.contains(out)
    for i in (0, 5):
        one = SPACE.perturb(keys[i], {n: v[i] for n, v in hp.items()})
        chex.assert_trees_all_close({n: v[i] for n, v in out.items()}, one, rtol=1e-6)


def test_perturb_with_given_coins_and_a_missing_one():
    space = hj.Space(lr=hj.LogUniform(1e-4, 1.0), m=hj.Uniform(0.0, 1.0))
    hp = {"lr": jnp.array([0.1, 0.1]), "m": jnp.array([0.5, 0.5])}
    out = space.perturb_with(hp, {"lr": jnp.array([True, False]), "m": jnp.array(True)})
    np.testing.assert_allclose(out["lr"], [0.125, 0.08], rtol=1e-6)
    np.testing.assert_allclose(out["m"], [0.625, 0.625], rtol=1e-6)
    with pytest.raises(ValueError, match="no coin flip for \\['m'\\]"):
        space.perturb_with(hp, {"lr": jnp.array(True)})
