"""A Loop's population laid out over a mesh: several devices of one process, or one
population over several processes (``hj.distributed``).

:class:`MeshLayout` is what ``hj.Loop(..., mesh=mesh)`` adds to the loop. It compiles
the tuned program so that the members are split over the mesh's ``"pop"`` axis and stay
there (``with_sharding_constraint`` inside each jitted call: the layout never changes
between windows, so nothing compiles again), while what the host reads (scores,
evaluations, the tuned row, the best member) comes back replicated on every device.
With several processes it also keeps them in step. Every process must take the same
Python branches, or one enters a collective that another skips and both wait. Values
read from the devices are the same everywhere; what is not (a callback's ``stop()``
or ``prune()``, an advisor's reply) is decided on process 0 and broadcast, and only
process 0 runs the callbacks (they write files and print).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ...core._checks import integer
from ...core.hparams import set_hparams
from ...core.members import members, per_task
from ...core.sharding import check_split, everywhere, laid_out, put, shardings
from ..distributed import fetch

__all__ = ["MeshLayout", "on_mesh"]


def on_mesh(mesh: Any, population: int | None, jit: bool | None) -> MeshLayout | None:
    """The Loop's :class:`MeshLayout` for ``mesh`` (``None`` without one), checked
    before any work.

    >>> import jax, hagfish_jax as hj
    >>> layout = on_mesh(hj.distributed.make_mesh(jax.devices()[:1]), 4, None)
    >>> layout.many, layout.lead, layout.agree(True, None)
    (False, True, (True, None))

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
      ValueError: a single run, ``jit=False``, no ``"pop"`` axis, a population that is
        not a multiple of the axis, or a mesh that spans some processes but not all.
    """
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(f"Loop: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if population is None:
        raise ValueError(
            "Loop: mesh= spreads a population's members over devices; give population=N"
        )
    population = integer("Loop: population", population, 1)
    if jit is False:
        raise ValueError(
            "Loop: mesh= compiles the training over the mesh; it cannot be used with jit=False"
        )
    check_split(mesh, "pop", population, "Loop")  # hj.distributed.make_mesh() makes one
    procs = {d.process_index for d in mesh.devices.flat}
    if len(procs) > 1 and procs != set(range(jax.process_count())):
        raise ValueError(
            f"Loop: the mesh spans processes {sorted(procs)} of "
            f"{jax.process_count()}: give it every process's devices "
            "(hj.distributed.make_mesh()) or this process's only"
        )
    if len(procs) == 1 and procs != {jax.process_index()}:
        raise ValueError("Loop: the mesh holds another process's devices only")
    return MeshLayout(mesh, population)


def _committed_elsewhere(x: Any, devices: set) -> bool:
    return isinstance(x, jax.Array) and x.committed and x.sharding.device_set != devices


class MeshLayout:
    """How a Loop lays out its population over ``mesh`` and keeps processes in step.

    Attributes:
      mesh: the mesh (axis ``"pop"`` holds the members).
      n: the population size.
      many: the mesh spans several processes.
      lead: this process decides for all of them and runs the callbacks (process 0).
    """

    def __init__(self, mesh: Mesh, n: int):
        self.mesh, self.n = mesh, n
        self.many = len({d.process_index for d in mesh.devices.flat}) > 1
        self.lead = jax.process_index() == 0 or not self.many
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self._devices = set(mesh.devices.flat)

        def take(state, order):  # one state per member of `order`
            return [everywhere(jax.tree.map(lambda x, i=i: x[i], state), mesh) for i in order]

        def write(carry, hp):
            return laid_out(carry._replace(state=set_hparams(carry.state, hp)), mesh)

        self._take, self._set = jax.jit(take), jax.jit(write)

    # -- the compiled program ----------------------------------------------------------
    def training(self, task: Any, vectorized: bool, shared_key: bool, data: bool) -> tuple:
        """Jitted ``(train, evaluate)`` of the task's members on the mesh: ``train(key,
        window, state, alive, *batches) -> (state, (metrics, key, window))`` splits the
        key and counts the window as the Loop does without a mesh; the members stay
        split, and metrics and evaluations come back replicated. Made once per task, mesh
        and options, and shared by every tuner and Loop on them (as
        :func:`hagfish_jax.program.compiled` is without a mesh)."""
        slot = (self.n, bool(vectorized), bool(shared_key), bool(data), self.mesh)
        cache = per_task(task)
        if slot not in cache:
            train, evaluate = members(task, *slot[:4])
            mesh, n = self.mesh, self.n

            def train_on_mesh(key, window, state, alive, *batches):
                key, k = jax.random.split(key)
                state, metrics = train(state, k, alive, *batches)
                state = jax.lax.with_sharding_constraint(state, shardings(state, mesh, n))
                return state, everywhere((metrics, key, window + 1), mesh)

            cache[slot] = (
                jax.jit(train_on_mesh),
                jax.jit(lambda state, *batches: everywhere(evaluate(state, *batches), mesh)),
            )
        return cache[slot]

    def compile(self, program: Any, task: Any, n, vectorized, shared_key, data) -> tuple:
        """The Loop's compiled calls on the mesh, ``(train, evaluate, init, start,
        score, tune, spawn, prune)``: the carry keeps its layout (``n``: the program's
        population, checked by :func:`on_mesh`), what the host reads comes back
        replicated."""
        p, mesh = program, self.mesh

        def tune(carry, metrics, evaluation, rollback):
            carry, row = p.tune(carry, metrics, evaluation, rollback)
            return laid_out(carry, mesh), everywhere(row, mesh)

        def spawn(carry, key, count, scale):
            carry, parents = p.spawn(carry, key, count, scale)
            return laid_out(carry, mesh), everywhere(parents, mesh)

        return (
            *self.training(task, vectorized, shared_key, data),
            jax.jit(lambda key, hp: laid_out(p.init(key, hp), mesh)),
            jax.jit(lambda key, state: laid_out(p.start(key, state), mesh)),
            jax.jit(lambda carry, m, ev: everywhere(p.score(carry, m, ev), mesh)),
            jax.jit(tune),
            jax.jit(spawn),
            jax.jit(lambda carry, k: laid_out(p.prune(carry, k), mesh)),
        )

    # -- values in and out -------------------------------------------------------------
    def inputs(self, tree: Any) -> Any:
        """Host values for a compiled call: arrays committed to devices off the mesh
        are copied onto it, replicated (every process passes the same values);
        anything else is left for ``jit`` to place."""
        if tree is None:
            return None
        return jax.tree.map(
            lambda x: put(x, self.replicated) if _committed_elsewhere(x, self._devices) else x,
            tree,
        )

    def place(self, state: Any) -> Any:
        """A starting state (the same values on every process) split over the mesh."""
        return jax.tree.map(put, state, shardings(state, self.mesh, self.n))

    def get(self, tree: Any) -> Any:
        """Host copies of ``tree``, on every process (gathered where it is split)."""
        return fetch(tree) if self.many else jax.device_get(tree)

    def members(self, state: Any, order: list[int]) -> list:
        """The states of the members in ``order``, replicated on every device (every
        process holds them whole), gathered in one compiled call."""
        return self._take(state, np.asarray(order, np.int32)) if order else []

    def train(self, train_members: Callable, carry: Any, batches: tuple) -> tuple[Any, dict]:
        """One window of training on the mesh (the compiled call of :meth:`training`)."""
        state, (metrics, key, window) = train_members(
            carry.key, carry.window, carry.state, carry.alive, *batches
        )
        return carry._replace(state=state, window=window, key=key), metrics

    def set_hparams(self, carry: Any, hp: dict) -> Any:
        """``carry`` with ``hp`` written into its state, in place on the mesh."""
        return self._set(carry, {k: np.float32(v) for k, v in hp.items()})

    # -- one decision for every process ------------------------------------------------
    def agree(self, stop: bool, prune: int | None) -> tuple[bool, int | None]:
        """Process 0's ``stop()``/``prune(k)`` requests, on every process."""
        if not self.many:
            return stop, prune
        from jax.experimental import multihost_utils

        mine = np.array([stop, -1 if prune is None else prune], np.int32)
        got = np.asarray(multihost_utils.broadcast_one_to_all(mine))
        if not self.lead and (stop or prune is not None) and not np.array_equal(got, mine):
            warnings.warn(
                f"Loop: process {jax.process_index()} asked stop={stop}, "
                f"prune={prune}; process 0 decides for all processes",
                stacklevel=3,
            )
        return bool(got[0]), None if got[1] < 0 else int(got[1])

    def share(self, value: Any) -> Any:
        """Process 0's ``value`` (anything JSON can carry) on every process."""
        if not self.many:
            return value
        from jax.experimental import multihost_utils

        data = json.dumps(value, default=_plain).encode() if self.lead else b""
        size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
        buf = np.zeros(-(-max(size, 1) // 4096) * 4096, np.uint8)  # few shapes to compile
        buf[: len(data)] = np.frombuffer(data, np.uint8)
        got = np.asarray(multihost_utils.broadcast_one_to_all(buf))
        return json.loads(got[:size].tobytes().decode())

    def consult(self, ask: Callable[[], tuple]) -> tuple[Any, dict, str | None]:
        """``ask()`` (the advisor: ``(advice, hparams, error)``) on process 0 only, one
        network call for all; every process gets its hyperparameters and error."""
        advice, hp, error = ask() if self.lead else (None, {}, None)
        if not self.many:
            return advice, hp, error
        reply = self.share({"hparams": {k: _plain(v) for k, v in hp.items()}, "error": error})
        return advice, reply["hparams"], reply["error"]


def _plain(v: Any) -> Any:
    """A JSON value for a numpy scalar (anything else: its text)."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return v.item() if hasattr(v, "item") else str(v)
