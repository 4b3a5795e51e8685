"""Populations: any pytree whose leaves carry a leading axis of size N.

Single-member code is written once; :func:`init` vmaps it. Exploiting a better
member is one gather over the leading axis (:func:`exploit`), inside jit. Shapes
never change: pruned members are masked out with an ``alive`` vector, and
spawning overwrites a masked slot. :func:`shard` spreads the population axis
over devices with a ``jax.sharding.Mesh`` axis named ``"pop"``; the program
stays the same and so do its results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._checks import integer, integer_or_array

__all__ = [
    "Lineage",
    "alive_mask",
    "exploit",
    "init",
    "lineage",
    "lineage_rows",
    "make_mesh",
    "prune",
    "rank",
    "resolve",
    "select",
    "shard",
    "size",
    "spawn",
]


def size(members: Any) -> int:
    """The population size N (the leading axis shared by every leaf).

    Raises:
      ValueError: no array leaf, a scalar leaf, or leaves of different lengths.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> hj.population.size({"w": jnp.zeros((4, 3)), "b": jnp.zeros(4)})
    4
    """
    leaves = jax.tree.leaves(members)
    if not leaves:
        raise ValueError("population: the pytree has no array leaves")
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "population: every leaf needs the same leading axis, got sizes "
            f"{sorted(map(str, sizes))}"
        )
    return sizes.pop()


def init(key: jax.Array, n: int, init_member: Callable[[jax.Array], Any]) -> Any:
    """``n`` members from a single-member ``init_member(key)``, stacked on axis 0.

    Args:
      key: PRNG key; member ``i`` gets the ``i``-th of ``n`` splits.
      n: population size (an integer >= 1).
      init_member: ``key -> pytree`` for one member.

    Returns:
      ``init_member``'s pytree with a leading axis of size ``n``.

    Raises:
      ValueError: ``n`` is not an integer >= 1.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> init_member = lambda k: {"w": jax.random.normal(k, (3,))}
    >>> members = hj.population.init(jax.random.key(0), 4, init_member)
    >>> members["w"].shape
    (4, 3)
    """
    n = integer("population.init: n", n, 1)
    return jax.vmap(init_member)(jax.random.split(key, n))


def resolve(parents: jax.Array, n: int) -> jax.Array:
    """``(N,)`` parents with ``KEEP`` (-1) and a scalar (single-run) proposal read as
    "keep your own": member ``i`` gets ``i``.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> hj.population.resolve(jnp.array([2, -1, 2]), 3).tolist()
    [2, 1, 2]
    """
    parents = jnp.asarray(parents, jnp.int32)
    own = jnp.arange(n, dtype=jnp.int32)
    return jnp.where(parents < 0, own, parents) if parents.ndim else own


def exploit(members: Any, parents: jax.Array) -> Any:
    """Member ``i`` becomes a copy of member ``parents[i]`` (one gather per leaf).

    ``parents[i] == i`` or ``KEEP`` (-1) keeps member ``i``; a scalar ``parents``
    (a single-run proposal) keeps everyone. Runs inside ``jit``.

    Args:
      members: the population (every leaf has the leading axis N).
      parents: ``(N,)`` int indices (``Proposal.parents``), or a scalar.

    Returns:
      The population after the copies, same structure, shapes and dtypes.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> members = {"w": jnp.array([10.0, 20.0, 30.0])}
    >>> hj.population.exploit(members, jnp.array([2, -1, 2]))["w"].tolist()
    [30.0, 20.0, 30.0]
    """
    n = size(members)
    idx = resolve(parents, n)
    # resolved indices are in range: 'clip' compiles no out-of-bounds fill
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=0, mode="clip"), members)


def select(members: Any, indices: Any) -> Any:
    """The members at ``indices``, as a smaller population (successive halving keeps its
    survivors this way; the new size is a new shape, so the next program compiles once).

    >>> import jax.numpy as jnp
    >>> select({"w": jnp.arange(4.0)}, [3, 1])["w"].tolist()
    [3.0, 1.0]
    """
    idx = jnp.asarray(indices, jnp.int32)
    return jax.tree.map(lambda x: x[idx], members)


def alive_mask(n: int) -> jax.Array:
    """All ``n`` members alive.

    Args:
      n: population size (an integer >= 1).

    Returns:
      A ``(n,)`` boolean array of ``True``.

    Raises:
      ValueError: ``n`` is not an integer >= 1.

    >>> import hagfish_jax as hj
    >>> hj.population.alive_mask(3).tolist()
    [True, True, True]
    """
    return jnp.ones((integer("population.alive_mask: n", n, 1),), jnp.bool_)


def rank(scores: jax.Array, eligible: jax.Array | None = None) -> jax.Array:
    """Rank 0 = best. NaN/inf and ineligible members rank last; ties go to the lower index.

    Args:
      scores: ``(N,)`` scores, higher is better.
      eligible: ``(N,)`` mask; ineligible members rank below every eligible one.
        ``None``: everyone is eligible.

    Returns:
      ``(N,)`` int32 ranks, a permutation of ``0..N-1``.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> hj.population.rank(jnp.array([0.1, jnp.nan, 0.9, 0.5])).tolist()
    [2, 3, 0, 1]
    """
    scores = jnp.asarray(scores, jnp.float32)
    n = scores.shape[0]
    if eligible is None:
        eligible = jnp.ones((n,), jnp.bool_)
    # Ineligible below every non-finite eligible score, non-finite below every finite one.
    tier = jnp.where(eligible, jnp.where(jnp.isfinite(scores), 2, 1), 0)
    value = jnp.where(tier == 2, scores, 0.0)
    idx = jnp.arange(n)
    better = (tier[None, :] > tier[:, None]) | (
        (tier[None, :] == tier[:, None])
        & (
            (value[None, :] > value[:, None])
            | ((value[None, :] == value[:, None]) & (idx[None, :] < idx[:, None]))
        )
    )
    return jnp.sum(better, axis=1).astype(jnp.int32)


def prune(alive: jax.Array, scores: jax.Array, k: int) -> jax.Array:
    """Mask out the ``k`` worst alive members (NaN worst); at least one stays alive.

    Args:
      alive: ``(N,)`` mask of the living members.
      scores: ``(N,)`` scores, higher is better.
      k: how many to prune: an integer >= 0, or an int array (traced inside ``jit``).

    Returns:
      The new ``(N,)`` alive mask.

    Raises:
      ValueError: ``k`` is a number but not an integer >= 0.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> alive = hj.population.alive_mask(4)
    >>> hj.population.prune(alive, jnp.array([0.5, 0.1, jnp.nan, 0.9]), 2).tolist()
    [True, False, False, True]
    """
    k = integer_or_array("population.prune: k", k, 0)
    alive = jnp.asarray(alive, jnp.bool_)
    r = rank(scores, alive)
    n_alive = jnp.sum(alive)
    k_eff = jnp.minimum(jnp.int32(k), jnp.maximum(n_alive - 1, 0))
    return alive & (r < n_alive - k_eff)


def spawn(
    members: Any,
    alive: jax.Array,
    scores: jax.Array,
    count: int | jax.Array | None = None,
) -> tuple[Any, jax.Array, jax.Array]:
    """Fill up to ``count`` masked slots with copies of the best alive members.

    The first empty slot gets the best member, the next the second best, and so
    on (cycling). Only masked slots are written.

    Args:
      members: the population (leading axis N).
      alive: ``(N,)`` mask of the living members.
      scores: ``(N,)`` scores, higher is better.
      count: at most this many slots are filled: an integer >= 0, an int array
        (traced inside ``jit``), or ``None`` for every masked slot.

    Returns:
      ``(members, alive, parents)``; ``parents`` says which member each slot copied
      (its own index where nothing happened), for the lineage record.

    Raises:
      ValueError: ``count`` is a number but not an integer >= 0.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> members = {"w": jnp.array([1.0, 2.0, 3.0, 4.0])}
    >>> alive = jnp.array([True, False, True, False])
    >>> members, alive, parents = hj.population.spawn(members, alive, jnp.array([0.1, 0, 0.7, 0]))
    >>> parents.tolist(), alive.tolist(), members["w"].tolist()
    ([0, 2, 2, 0], [True, True, True, True], [1.0, 3.0, 3.0, 1.0])
    """
    alive = jnp.asarray(alive, jnp.bool_)
    n = alive.shape[0]
    count = n if count is None else integer_or_array("population.spawn: count", count, 0)
    r = rank(scores, alive)
    order = jnp.argsort(r)  # best first; alive members come first
    n_alive = jnp.sum(alive)
    dead = ~alive
    slot = jnp.cumsum(dead) - 1  # 0, 1, ... over the masked slots
    fill = dead & (slot < count) & (n_alive > 0)
    source = order[jnp.mod(slot, jnp.maximum(n_alive, 1))]
    parents = jnp.where(fill, source, jnp.arange(n)).astype(jnp.int32)
    return exploit(members, parents), alive | fill, parents


def make_mesh(devices=None, axis: str = "pop") -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) with the population axis.

    Args:
      devices: the devices to use; ``None``: ``jax.devices()``.
      axis: the mesh axis name that :func:`shard` puts the population on.

    Returns:
      A ``jax.sharding.Mesh`` with the single axis ``axis``.

    >>> import jax, hagfish_jax as hj
    >>> mesh = hj.population.make_mesh()
    >>> mesh.axis_names, mesh.size == len(jax.devices())
    (('pop',), True)
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (axis,))


def shard(members: Any, mesh: Mesh, axis: str = "pop") -> Any:
    """Place the population axis of every leaf on the mesh axis ``axis``.

    N must be a multiple of the axis size. Scalars (shared values such as a
    generation counter or a PRNG key) are replicated, so a population tuner's
    state can be sharded the same way.

    Args:
      members: the population (or a population tuner's state).
      mesh: from :func:`make_mesh`.
      axis: the mesh axis to split the population over.

    Returns:
      ``members`` with every leaf placed on the mesh (same values).

    Raises:
      ValueError: ``axis`` is not a mesh axis, or N is not a multiple of its size.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> mesh = hj.population.make_mesh(jax.devices()[:1])
    >>> placed = hj.population.shard({"w": jnp.zeros((4, 3)), "step": jnp.int32(0)}, mesh)
    >>> tuple(placed["w"].sharding.spec), tuple(placed["step"].sharding.spec)
    (('pop',), ())
    """
    from .sharding import check_split  # it builds on this module

    for n in {int(np.shape(x)[0]) for x in jax.tree.leaves(members) if np.ndim(x)} or {1}:
        check_split(mesh, axis, n, "shard")
    split = NamedSharding(mesh, PartitionSpec(axis))
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, split if np.ndim(x) else replicated), members)


class Lineage(NamedTuple):
    """One generation of the family tree; ``lax.scan`` stacks it to ``(G, N)``.

    Attributes:
      parents: ``(N,)`` whom each member copied (its own index when it did not).
      hparams: ``(N,)`` arrays: each member's hyperparameters after explore.
      scores: ``(N,)`` the scores that decided the generation.
      alive: ``(N,)`` the alive mask.
    """

    parents: jax.Array
    hparams: Mapping[str, jax.Array]
    scores: jax.Array
    alive: jax.Array


def lineage(proposal, scores: jax.Array, alive: jax.Array | None = None) -> Lineage:
    """The lineage record of one generation from a population proposal.

    Args:
      proposal: a population tuner's :class:`~hagfish_jax.Proposal`.
      scores: ``(N,)`` the scores that decided the generation.
      alive: ``(N,)`` mask; ``None``: everyone alive.

    Returns:
      A :class:`Lineage` with ``(N,)`` leaves (``KEEP`` read as "own index").

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> proposal = hj.Proposal({"lr": jnp.array([0.1, 0.2])}, jnp.array([1, -1]), False)
    >>> record = hj.population.lineage(proposal, jnp.array([0.3, 0.8]))
    >>> record.parents.tolist(), record.alive.tolist()
    ([1, 1], [True, True])
    """
    scores = jnp.asarray(scores, jnp.float32)
    n = scores.shape[0]
    parents = resolve(proposal.parents, n)
    alive = jnp.ones((n,), jnp.bool_) if alive is None else jnp.asarray(alive, jnp.bool_)
    return Lineage(parents, dict(proposal.hparams), scores, alive)


def lineage_rows(record: Lineage, start: int = 0) -> list[dict[str, Any]]:
    """Host-side rows ``{generation, member, parent, score, alive, **hparams}`` for logging.

    ``record`` is one generation (``(N,)`` leaves) or a scanned stack (``(G, N)``).

    Args:
      record: a :class:`Lineage`, one generation or stacked by ``lax.scan``.
      start: the generation number of the first row (an integer >= 0).

    Returns:
      One ``dict`` per generation and member, generation-major.

    Raises:
      ValueError: ``start`` is not an integer >= 0.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> proposal = hj.Proposal({"lr": jnp.array([0.5, 0.25])}, jnp.array([1, 1]), False)
    >>> rows = hj.population.lineage_rows(hj.population.lineage(proposal, jnp.zeros(2)), 3)
    >>> rows[0]
    {'generation': 3, 'member': 0, 'parent': 1, 'score': 0.0, 'alive': True, 'lr': 0.5}
    """
    start = integer("population.lineage_rows: start", start, 0)
    rec = jax.tree.map(np.asarray, record)
    parents = rec.parents if rec.parents.ndim == 2 else rec.parents[None]
    stack = lambda x: x if np.ndim(x) == 2 else np.asarray(x)[None]  # noqa: E731
    scores, alive = stack(rec.scores), stack(rec.alive)
    hps = {k: stack(v) for k, v in rec.hparams.items()}
    rows = []
    for g in range(parents.shape[0]):
        for i in range(parents.shape[1]):
            row = {
                "generation": start + g,
                "member": i,
                "parent": int(parents[g, i]),
                "score": float(scores[g, i]),
                "alive": bool(alive[g, i]),
            }
            row.update({k: float(v[g, i]) for k, v in hps.items()})
            rows.append(row)
    return rows
