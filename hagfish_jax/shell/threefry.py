"""Threefry random numbers lowered without a loop on the CPU: the same bits, compiled
faster.

JAX's default random numbers come from the Threefry-2x32 hash (20 rounds). On the
CPU, JAX lowers each hash as a ``while`` loop of 5 iterations whose rotation amounts
are loop-carried values, and XLA's CPU backend compiles every such loop as several
kernels that cannot fold the rotations. A population program draws under ``vmap``
(one key per member), so each draw of the task (data order, dropout masks, key
splits) becomes a loop over a two-dimensional array. :func:`unroll` registers a
lowering with the 20 rounds written out and the rotations constant (the form JAX
uses on other backends): one fused kernel per draw.

The bits are the same: a program's random numbers, and so its results, do not change,
only its compile time and speed. On the 32-member digits PBT program
(``benchmarks/population_compile_time.py``) it cut the kernels XLA compiles from 221
to 177 and their LLVM IR by a quarter; the single-run program is about unchanged.

It is opt-in: the choice is process-wide (a lowering rule of JAX's ``threefry2x32``
primitive on the CPU) and applies to programs lowered after the call; programs already
compiled keep theirs. Call ``hj.unroll_threefry()`` once, before the first jitted
call; ``hj.unroll_threefry(False)`` puts back the loop. It pays where cold compiles of
populations dominate; with a warm compilation cache the unrolled program is a little
slower to lower and load (about 0.08 s on that program), and ``hagfish demo`` (a
small population) took as long either way, so the CLI leaves JAX's loop.

>>> import jax
>>> was = unrolled()
>>> looped = jax.jit(lambda k: jax.random.bits(k, (4,)))
>>> before = looped(jax.random.key(7)) if not was else None
>>> unroll()
True
>>> after = jax.jit(lambda k: jax.random.bits(k, (4,)))(jax.random.key(7))
>>> was or bool((after == before).all())
True
>>> unroll(was) == was  # back as it was
True
"""

from __future__ import annotations

import numpy as np
from jax import lax
from jax.extend.random import threefry2x32_p
from jax.interpreters import mlir

__all__ = ["unroll", "unrolled"]

_ROTATIONS = (np.array([13, 15, 26, 6], np.uint32), np.array([17, 29, 16, 24], np.uint32))
_PARITY = np.uint32(0x1BD11BDA)  # the Threefry key schedule's constant
_state = {"unrolled": False}


def _rotate_left(v, d):
    """``v`` rotated left by ``d`` bits (a constant, or a traced uint32 in the loop)."""
    return (v << d) | (v >> (np.uint32(32) - d))


def _rounds(x0, x1, rotations):
    for r in rotations:
        x0 = x0 + x1
        x1 = x0 ^ _rotate_left(x1, r)
    return x0, x1


def _unrolled_hash(k1, k2, x1, x2):
    """Threefry-2x32, 20 rounds, every rotation a constant."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x0, x1 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        x0, x1 = _rounds(x0, x1, _ROTATIONS[i % 2])
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _looped_hash(k1, k2, x1, x2):
    """The same hash as a loop of 5 steps of 4 rounds (JAX's own CPU lowering)."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x0, x1 = x1 + ks[0], x2 + ks[1]
    rotations = list(_ROTATIONS)

    def step(i, carry):
        (x0, x1), ks, rotations = carry
        x0, x1 = _rounds(x0, x1, rotations[0])  # the rotations are loop values here
        x0, x1 = x0 + ks[0], x1 + ks[1] + (i + 1).astype(np.uint32)
        return (x0, x1), ks[1:] + ks[:1], rotations[1:] + rotations[:1]

    (x0, x1), _, _ = lax.fori_loop(0, 5, step, ((x0, x1), ks[1:] + ks[:1], rotations))
    return x0, x1


def unroll(enable: bool = True) -> bool:
    """Lower Threefry on the CPU with its rounds written out (``enable``), or as a loop
    again (``False``). Returns whether the unrolled lowering is now in force."""
    rule = _unrolled_hash if enable else _looped_hash
    mlir.register_lowering(threefry2x32_p, mlir.lower_fun(rule, multiple_results=True), "cpu")
    _state["unrolled"] = bool(enable)
    return _state["unrolled"]


def unrolled() -> bool:
    """Whether :func:`unroll` put the unrolled lowering in force in this process."""
    return _state["unrolled"]
