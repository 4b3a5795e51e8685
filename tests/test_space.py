"""Search space: unit-cube round trips, sampling, clip, perturb, validation, jit/vmap."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hagfish_jax as hj

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPACE = hj.Space(
    lr=hj.LogUniform(1e-5, 1e-1),
    b1=hj.Uniform(0.8, 0.99),
    bs=hj.Choice([16, 32, 64, 128]),
    layers=hj.IntUniform(1, 4),
    opt=hj.Choice(["adam", "sgd", "lion"]),
)
HP = {"lr": 1e-3, "b1": 0.9, "bs": 64.0, "layers": 2.0, "opt": 1.0}


def f32(x):
    return np.asarray(x, np.float32)


def roundtrip(space, hp):
    return space.from_unit(space.to_unit(hp))


# Batch sizes are drawn from a few fixed values so eager ops do not compile per example.
unit = st.floats(0.0, 1.0, allow_nan=False)
batch_units = st.sampled_from([1, 3, 8]).flatmap(lambda n: st.lists(unit, min_size=n, max_size=n))


# ------------------------------------------------------------------ round trips
@FAST
@given(
    low=st.floats(-1e3, 1e3),
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
    again = roundtrip(SPACE, hp)
    for n in SPACE.names:
        np.testing.assert_allclose(again[n], hp[n], rtol=1e-5)


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
    for n in SPACE.names:
        np.testing.assert_array_equal(a[n], b[n])
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
    u = space.to_unit({"z": 0.5, "a": 1e-2, "m": 0.0})
    np.testing.assert_allclose(u, [0.5, 0.0, 0.25], atol=1e-6)
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
    for v in out.values():
        assert v.dtype == jnp.float32 and v.shape == (3,)
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
    # clipping is idempotent
    again = SPACE.clip(out)
    for n in SPACE.names:
        np.testing.assert_array_equal(again[n], out[n])


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
    for n in a:
        assert a[n].dtype == jnp.float32 and a[n].shape == ()
        assert float(a[n]) == float(b[n])


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


# ------------------------------------------------------------------ validation
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "dim",
    [
        hj.Uniform(1.0, 0.0),
        hj.Uniform(1.0, 1.0),
        hj.Uniform(NAN, 1.0),
        hj.Uniform(0.0, NAN),
        hj.Uniform(-INF, 0.0),
        hj.Uniform(0.0, INF),
        hj.Uniform("low", 1.0),
        hj.Uniform(None, 1.0),
        hj.LogUniform(0.0, 1.0),
        hj.LogUniform(-1.0, 1.0),
        hj.LogUniform(-2.0, -1.0),
        hj.LogUniform(1.0, 1.0),
        hj.LogUniform(1.0, 0.1),
        hj.LogUniform(1e-3, INF),
        hj.LogUniform(NAN, 1.0),
        hj.IntUniform(0.5, 3),
        hj.IntUniform(1, 3.5),
        hj.IntUniform(3, 3),
        hj.IntUniform(4, 1),
        hj.IntUniform(NAN, 3),
        hj.IntUniform(0, INF),
        hj.Choice([]),
        hj.Choice([1, 2, 1]),
        hj.Choice(["a", "b", "a"]),
        hj.Choice([1.0, INF]),
        hj.Choice([NAN, 1.0]),
    ],
    ids=repr,
)
def test_invalid_dimension_names_it(dim):
    with pytest.raises(ValueError, match="my_dim"):
        hj.Space(ok=hj.Uniform(0.0, 1.0), my_dim=dim)


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
    traces = []

    def f(space, u):
        traces.append(1)
        return space.from_unit(u)

    jf = jax.jit(f, static_argnums=0)
    s1 = hj.Space(x=hj.Uniform(0.0, 1.0), y=hj.LogUniform(1e-3, 1.0))
    s2 = hj.Space(y=hj.LogUniform(1e-3, 1.0), x=hj.Uniform(0.0, 1.0))
    jf(s1, jnp.full((2,), 0.5))
    jf(s2, jnp.full((2,), 0.25))
    assert len(traces) == 1
    out = jf(hj.Space(x=hj.Uniform(0.0, 4.0), y=hj.LogUniform(1e-3, 1.0)), jnp.full((2,), 0.5))
    assert len(traces) == 2 and float(out["x"]) == 2.0


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
    assert sorted(a) == sorted(b)
    for n in a:
        assert a[n].shape == b[n].shape and a[n].dtype == b[n].dtype
        np.testing.assert_allclose(a[n], b[n], rtol=rtol)


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
        for n in SPACE.names:
            np.testing.assert_allclose(out[n][i], one[n], rtol=1e-6)
