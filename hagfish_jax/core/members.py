"""The task's training and evaluation over a run's members, compiled once per task.

:func:`members` vmaps a task written for one member over a population (masked members
keep their state); :func:`compiled` jits that pair once per task and population size,
so every tuned program and every Loop on the task shares one compiled training.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import jax

from . import snapshot as snapshot_lib
from ._trace import quiet_gc

__all__ = ["compiled", "members", "per_task"]


def members(
    task: Any, n: int | None, vectorized: bool, shared_key: bool = False, data: bool = False
) -> tuple[Callable, Callable]:
    """The task's training and evaluation over its members: vmapped for a population
    (masked members keep their state), as they are for one run or ``vectorized``.
    ``shared_key``: every member trains the window with the same key instead of a key
    of its own: the same minibatch order, dropout masks and any other random numbers
    the task draws (common random numbers). Members then differ only by their weights
    and hyperparameters, and the random numbers are drawn once instead of once per
    member, so the program compiles and trains faster
    (``benchmarks/population_compile_time.py``). Initial weights still differ (``init``
    gets a key per member). The members lose the diversity of their data orders, and
    on ``benchmarks/population.py`` that cost PBT accuracy (README, "Populations").
    No effect on a single run or a ``vectorized`` task.

    ``data``: the task trains and evaluates on live data (``hj.Stream``):
    ``train_window(state, key, batches)`` and ``evaluate(state, batches)``, every member
    on the same batches, which are not vmapped."""
    extra = (None,) if data else ()

    @quiet_gc
    def train(state, key, alive, *batches):
        if n is None or vectorized:
            new, metrics = task.train_window(state, key, *batches)
        elif shared_key:  # one key, not batched: its random numbers are drawn once
            new, metrics = jax.vmap(task.train_window, in_axes=(0, None, *extra))(
                state, key, *batches
            )
        else:
            keys = jax.random.split(key, n)
            new, metrics = jax.vmap(task.train_window, in_axes=(0, 0, *extra))(
                state, keys, *batches
            )
        if n is not None:
            new = snapshot_lib.where(alive, new, state)
        return new, metrics

    @quiet_gc
    def evaluate(state, *batches):
        if n is None or vectorized:
            return task.evaluate(state, *batches)
        return jax.vmap(task.evaluate, in_axes=(0, *extra))(state, *batches)

    return train, evaluate


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def per_task(task: Any) -> dict:
    """The dictionary of compiled functions kept for ``task`` (one per task, dropped
    with it; a fresh one each call for a task that cannot be weakly referenced)."""
    try:
        return _COMPILED.setdefault(task, {})
    except TypeError:
        return {}


def compiled(
    task: Any,
    population: int | None = None,
    vectorized: bool = False,
    shared_key: bool = False,
    data: bool = False,
) -> tuple:
    """Jitted ``(train_members, evaluate_members)`` of ``task``, made once per task,
    population size and key sharing, and shared by every program on it: changing the
    tuner, or building a new Loop on the same task, compiles no training code again.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> task = hj.Task(init=lambda k, hp: {"w": jnp.ones(2)},
    ...                train_window=lambda s, k: ({"w": s["w"] * 0.5}, {}),
    ...                evaluate=lambda s: {"score": -jnp.sum(s["w"])},
    ...                space=None, default_hparams={})
    >>> compiled(task)[0] is compiled(task)[0]
    True
    """
    slot = (
        None if population is None else int(population),
        bool(vectorized),
        bool(shared_key),
        bool(data),
    )
    cache = per_task(task)
    if slot not in cache:
        train, evaluate = members(task, *slot)
        cache[slot] = (jax.jit(train), jax.jit(evaluate))
    return cache[slot]
