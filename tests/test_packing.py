"""core.packing: a carry's small leaves packed for host loops, exactly round-tripped."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_program import SPACE, TASK

import hagfish_jax as hj
from hagfish_jax.core.packing import Packer


def tree():
    return {
        "w": jnp.arange(100.0),  # large: passes through
        "lr": jnp.float32(0.1),
        "b1": jnp.float32(0.9),
        "steps": jnp.int32(7),
        "flag": jnp.bool_(True),
        "pair": (jnp.zeros(2), jnp.ones(2)),
        "key": jax.random.key(3),  # a PRNG key is never stacked
        "half": jnp.float16(1.5),  # alone in its group: passes through
    }


def test_round_trip_is_exact_and_keeps_dtypes():
    t = tree()
    packer = Packer(t)
    packed = packer.pack(t)
    assert packer.leaves == len(jax.tree.leaves(packed)) < len(jax.tree.leaves(t))
    back = packer.unpack(packed)
    chex.assert_trees_all_equal_dtypes(back["lr"], t["lr"])
    assert jax.tree.structure(back) == jax.tree.structure(t)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(t)):
        assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(back["w"], t["w"])
    assert int(back["steps"]) == 7 and bool(back["flag"]) and float(back["half"]) == 1.5
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), jax.random.key_data(t["key"]))


def test_wrong_structure_is_refused():
    packer = Packer(tree())
    with pytest.raises(ValueError, match="structure"):
        packer.pack({"w": jnp.zeros(3)})


def test_a_leaf_that_changes_dtype_or_shape_is_refused_not_cast():
    packer = Packer(tree())
    step = packer.jit(lambda t: {**t, "lr": t["lr"].astype(jnp.int32)})
    with pytest.raises(ValueError, match=r"was float32\[\] and is now int32\[\]"):
        step(packer.pack(tree()))
    grown = packer.jit(lambda t: {**t, "pair": (jnp.zeros(3), t["pair"][1])})
    with pytest.raises(ValueError, match="keeps its shape and dtype"):
        grown(packer.pack(tree()))
    # a Python number (weakly typed) takes the leaf's dtype, as in a scan's carry
    out = packer.unpack(packer.jit(lambda t: {**t, "lr": 0.5})(packer.pack(tree())))
    assert out["lr"].dtype == jnp.float32 and float(out["lr"]) == 0.5


def test_a_packed_window_equals_the_plain_window_and_never_retraces():
    prog = hj.program.build(TASK, hj.guard(hj.finite_difference(SPACE), warmup=0, space=SPACE))
    carry = jax.jit(prog.init)(jax.random.key(0))
    plain = jax.jit(prog.window)
    traces = []

    def counted(c):
        traces.append(1)
        return prog.window(c)

    packer = Packer(carry)
    step = packer.jit(counted, has_aux=True)
    packed, c = packer.pack(carry), carry
    assert packer.leaves < len(jax.tree.leaves(carry))
    for _ in range(6):  # the stateful toy blows up in window 3: a rollback is in here
        packed, row_p = step(packed)
        c, row = plain(c)
        chex.assert_trees_all_equal(row_p, row)
    chex.assert_trees_all_equal(packer.unpack(packed), c)
    assert len(traces) == 1


def test_donated_packed_window_runs():
    prog = hj.program.build(TASK, hj.fixed())
    carry = jax.jit(prog.init)(jax.random.key(1))
    packer = Packer(carry)
    step = packer.jit(prog.window, has_aux=True, donate=True)
    packed = packer.pack(carry)
    for _ in range(3):
        packed, _ = step(packed)
    assert int(packer.unpack(packed).window) == 3


def test_a_population_carry_packs_and_steps_the_same():
    prog = hj.program.build(TASK, hj.pbt(SPACE, ready=1), population=4)
    carry = jax.jit(prog.init)(jax.random.key(2), SPACE.sample(jax.random.key(3), 4))
    packer = Packer(carry)
    assert packer.leaves < len(jax.tree.leaves(carry))
    step, plain = packer.jit(prog.window, has_aux=True), jax.jit(prog.window)
    packed, c = packer.pack(carry), carry
    for _ in range(3):
        packed, row_p = step(packed)
        c, row = plain(c)
        chex.assert_trees_all_equal(row_p, row)
    chex.assert_trees_all_equal(packer.unpack(packed), c)
