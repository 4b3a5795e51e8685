"""A population's tuned program laid out over a mesh: one process or many.

:func:`hagfish_jax.population.shard` places a population that already exists on one
host. A population spread over several processes (``jax.distributed``: N processes on
one machine, a multi-host GPU cluster, a TPU pod slice) cannot be built on one host and
then placed: no process can address the others' devices. :func:`sharded` compiles the
program so that it builds its carry already laid out on the mesh (each process computes
and holds only its slice of the members), runs windows in one ``lax.scan`` on that
layout, and hands back rows replicated on every device.

The layout decides where values live, not what they are. The steps that look across
the population (the tuner's ranking, the exploit gather, the best member) are gathers
and comparisons, which XLA's collectives carry out exactly, and each member's arithmetic
is its own: two processes give bit for bit what one process gives on the same number of
devices, and what one device gives when the task's arithmetic is elementwise
(``tests/test_distributed.py``). A member's matmul, though, is compiled for the batch of
members each device holds, and XLA's CPU kernels for 2 members and for 8 round
differently: a task with matmuls agrees with its one-device run to the last bits
(measured: scores within 1.3e-6 relative over 4 windows), and PBT's decisions agree
unless two scores tie to within that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._checks import integer
from .carry import Carry, Program
from .population import make_mesh

__all__ = [
    "Sharded",
    "carry_shardings",
    "check_split",
    "everywhere",
    "is_key",
    "laid_out",
    "put",
    "sharded",
    "shardings",
]


def check_split(mesh: Any, axis: str, n: Any, where: str) -> int:
    """``n`` members can be split over ``mesh``'s axis ``axis``: returns ``n``; else a
    ``TypeError``/``ValueError`` that starts with ``where``."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{where}: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis not in mesh.axis_names:
        raise ValueError(f"{where}: mesh has axes {mesh.axis_names}, not {axis!r}")
    n = integer(f"{where}: n", n, 1)
    if n % mesh.shape[axis]:
        raise ValueError(
            f"{where}: population size {n} is not a multiple of the "
            f"{mesh.shape[axis]} devices on {axis!r}"
        )
    return n


def shardings(tree: Any, mesh: Mesh, n: int, axis: str = "pop") -> Any:
    """Where each leaf of ``tree`` goes: a leading axis of size ``n`` split over the
    mesh axis ``axis``, everything else (scalars, other shapes) replicated.

    Works on arrays and on shapes alone (``jax.ShapeDtypeStruct``, tracers), so it can
    run inside ``jit``.

    Args:
      tree: a pytree of arrays or shapes.
      mesh: a ``jax.sharding.Mesh`` with the axis ``axis``.
      n: the population size; a multiple of the size of ``axis``.
      axis: the mesh axis that holds the members.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``tree``.

    Raises:
      TypeError: ``mesh`` is not a Mesh.
      ValueError: ``axis`` is not a mesh axis, ``n`` is not an integer >= 1, or ``n``
        is not a multiple of the axis size.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> from hagfish_jax.core.sharding import shardings
    >>> mesh = hj.population.make_mesh(jax.devices()[:1])
    >>> s = shardings({"w": jnp.zeros((4, 3)), "t": jnp.int32(0), "b": jnp.zeros(3)}, mesh, 4)
    >>> tuple(s["w"].spec), tuple(s["t"].spec), tuple(s["b"].spec)
    (('pop',), (), ())
    """
    n = check_split(mesh, axis, n, "shardings")
    split = NamedSharding(mesh, PartitionSpec(axis))
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(x):
        shape = np.shape(x)
        return split if len(shape) and shape[0] == n else replicated

    return jax.tree.map(place, tree)


def carry_shardings(carry: Carry, mesh: Mesh, axis: str = "pop") -> Carry:
    """The layout of a population's :class:`~hagfish_jax.Carry` on ``mesh``.

    The members, their snapshots, the tuner's per-member state and the per-member
    counters are split over ``axis``; the best member (one member's state), the window
    counter and the key are replicated, so every process holds them whole.

    Args:
      carry: a population's carry (arrays or shapes, e.g. from ``jax.eval_shape``).
      mesh: a ``jax.sharding.Mesh`` with the axis ``axis``.
      axis: the mesh axis that holds the members.

    Returns:
      A :class:`~hagfish_jax.Carry` of ``NamedSharding``.

    Raises:
      ValueError: a single run's carry (it has no members), or as :func:`shardings`.
    """
    if not np.ndim(carry.alive):
        raise ValueError("carry_shardings: a single run's carry has no members to split")
    n = int(np.shape(carry.alive)[0])
    out = shardings(carry._replace(best=None), mesh, n, axis)
    replicated = NamedSharding(mesh, PartitionSpec())
    return out._replace(best=jax.tree.map(lambda _: replicated, carry.best))


def is_key(x: Any) -> bool:
    """``x`` is an array of typed PRNG keys."""
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def laid_out(carry: Carry, mesh: Mesh, axis: str = "pop") -> Carry:
    """A population's carry held in its layout on ``mesh`` (inside ``jit``)."""
    return jax.lax.with_sharding_constraint(carry, carry_shardings(carry, mesh, axis))


def everywhere(tree: Any, mesh: Mesh) -> Any:
    """``tree`` replicated on every device of ``mesh`` (inside ``jit``): what the host
    reads, whole on every process."""
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.lax.with_sharding_constraint(tree, jax.tree.map(lambda _: replicated, tree))


def put(x: Any, sharding: NamedSharding) -> jax.Array:
    """``x`` laid out as ``sharding``: a global array is resharded among its devices;
    a value this process holds whole (every process the same) gives each local device
    its part, with no transfer between processes."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    if is_key(x):
        data = put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class Sharded(NamedTuple):
    """A population's tuned program compiled over a mesh (see :func:`sharded`).

    Attributes:
      init: ``(key, hparams=None) -> Carry``: fresh members, built in place: each
        process computes and holds only its slice.
      start: ``(key, state) -> Carry`` around existing members (a global array, or
        the same host values on every process).
      scan: ``(carry, windows) -> (carry, rows)``: ``windows`` tuned windows in one
        ``lax.scan``; the carry keeps its layout, the rows (leading axis ``windows``)
        are replicated on every device.
      place: ``carry -> carry``: a carry made elsewhere (one device, or the same host
        values on every process) put on the mesh.
      mesh: the mesh.
      axis: the mesh axis that holds the members.
    """

    init: Callable[..., Carry]
    start: Callable[[jax.Array, Any], Carry]
    scan: Callable[[Carry, int], tuple[Carry, dict]]
    place: Callable[[Carry], Carry]
    mesh: Mesh
    axis: str


def sharded(program: Program, mesh: Mesh | None = None, axis: str = "pop") -> Sharded:
    """Compile a population's ``program`` over ``mesh`` (default: every device of
    every process, ``jax.devices()``).

    Every process calls the same functions with the same arguments (the key, the
    hyperparameters, the number of windows): that is how JAX runs one program over
    many processes. On one process this is the same program as ``jax.jit``-ing
    ``program.init`` and scanning ``program.window``, laid out over its devices.

    Args:
      program: from :func:`hagfish_jax.program.build` with ``population=N``.
      mesh: a ``jax.sharding.Mesh`` with the axis ``axis``; N must be a multiple of
        its size.
      axis: the mesh axis for the members.

    Returns:
      A :class:`Sharded`.

    Raises:
      TypeError: ``program`` is not a Program, or ``mesh`` not a Mesh.
      ValueError: a single-run program, ``axis`` not on the mesh, or N not a multiple
        of the axis size.

    >>> import jax, jax.numpy as jnp, optax, hagfish_jax as hj
    >>> from hagfish_jax.core.sharding import sharded
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> def init(key, hp):
    ...     w = jax.random.normal(key, (3,))
    ...     return hj.set_hparams({"w": w, "opt": tx.init(w)}, hp)
    >>> def train_window(s, key):
    ...     u, opt = tx.update(2 * s["w"], s["opt"], s["w"])
    ...     return {"w": s["w"] + u, "opt": opt}, {}
    >>> task = hj.Task(init=init, train_window=train_window,
    ...                evaluate=lambda s: {"score": -jnp.sum(s["w"] ** 2)},
    ...                space=space, default_hparams={"learning_rate": 0.1})
    >>> run = sharded(hj.program.build(task, hj.pbt(space), population=4))
    >>> carry = run.init(jax.random.key(0), space.sample(jax.random.key(1), 4))
    >>> carry, rows = run.scan(carry, 3)
    >>> rows["score"].shape, int(carry.window)
    ((3, 4), 3)
    """
    if not isinstance(program, Program):
        raise TypeError(f"sharded: program must be a hagfish_jax Program, got {program!r}")
    n = program.population
    if n is None:
        raise ValueError("sharded: a single-run program has no members to spread over devices")
    mesh = make_mesh(axis=axis) if mesh is None else mesh
    check_split(mesh, axis, n, "sharded")  # before anything compiles

    def _init(key, hparams):
        return laid_out(program.init(key, hparams), mesh, axis)

    def _start(key, state):
        return laid_out(program.start(key, state), mesh, axis)

    def _scan(carry, windows):
        carry, rows = jax.lax.scan(
            program.window, laid_out(carry, mesh, axis), None, length=windows
        )
        return laid_out(carry, mesh, axis), everywhere(rows, mesh)

    init_fn, start_fn = jax.jit(_init), jax.jit(_start)
    scan_fn = jax.jit(_scan, static_argnums=1)

    def init(key: jax.Array, hparams: Mapping[str, Any] | None = None) -> Carry:
        return init_fn(key, None if hparams is None else dict(hparams))

    def scan(carry: Carry, windows: int) -> tuple[Carry, dict]:
        return scan_fn(carry, integer("sharded.scan: windows", windows, 1))

    def place(carry: Carry) -> Carry:
        return jax.tree.map(put, carry, carry_shardings(carry, mesh, axis))

    return Sharded(init, start_fn, scan, place, mesh, axis)
