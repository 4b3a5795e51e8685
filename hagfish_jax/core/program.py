"""The tuned window: one program for a single run and for a vmapped population.

Every tuned run in hagfish_jax goes through these functions: ``hj.Loop`` (one run or a
population, with its backoff between calls), ``hagfish demo``, the examples and the
benchmarks. One window is

    train -> evaluate -> tune -> snapshot / roll back -> exploit -> set_hparams

and the program also keeps, on device, the best member seen across all windows (its
state, the hyperparameters it trained with, its score, window and member index).

:func:`build` returns a :class:`Program` of pure functions over a :class:`Carry`; the
caller jits them (or scans :meth:`Program.window`). A population is the same code
with ``population=N``: the task's functions are vmapped, a single-run tuner is vmapped
per member, a population tuner (``pbt``, ``pb2``) sees the ``(N,)`` scores, and
pruned members are masked (``alive``) instead of removed, so shapes never change and
nothing recompiles.

>>> import jax, jax.numpy as jnp, optax, hagfish_jax as hj
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
>>> prog = hj.program.build(task, hj.pbt(space), population=4)
>>> carry = prog.init(jax.random.key(0), space.sample(jax.random.key(1), 4))
>>> carry, rows = jax.jit(lambda c: jax.lax.scan(prog.window, c, None, length=5))(carry)
>>> rows["score"].shape, int(carry.best.window) >= 0
((5, 4), True)

Driven window by window from Python instead (to look at each row between windows), a
call costs a little host time per leaf of the carry; a :class:`Packer` stacks the
carry's small leaves (tuner counters, hyperparameters, scores) so each call moves a
few arrays:

>>> packer = hj.program.Packer(carry)
>>> step = packer.jit(prog.window, has_aux=True)
>>> packed = packer.pack(carry)
>>> for _ in range(3):
...     packed, row = step(packed)
>>> int(packer.unpack(packed).window)
8
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from . import best as best_lib
from . import population as population_lib
from . import snapshot as snapshot_lib
from ._checks import integer
from ._trace import quiet_gc
from .base import HParams, Observation, Tuner
from .carry import Best, Carry, Program, recent_only
from .divergence import window_score
from .hparams import get_hparams, set_hparams
from .members import compiled, members
from .packing import Packed, Packer
from .rollback import noised, scaled, shrink_factors, unscaled
from .task import check_task

__all__ = [
    "Best",
    "Carry",
    "Packed",
    "Packer",
    "Program",
    "build",
    "compiled",
    "recent_only",
    "scan",
]


def build(
    task: Any,
    tuner: Tuner,
    population: int | None = None,
    *,
    vectorized: bool = False,
    max_repeats: int = 3,
    shrink: Mapping[str, float] | None = None,
    windows: int | None = None,
    select: str = "score",
    shared_key: bool = False,
) -> Program:
    """The tuned window of ``task`` under ``tuner``, for one run or a population.

    Args:
      task: anything with the :class:`hagfish_jax.Task` protocol.
      tuner: any tuner. A single-run tuner on a population is vmapped: each member
        has its own. A population tuner (``Tuner.population``) ranks them together.
      population: N members, or ``None`` for a single run.
      vectorized: the task's ``train_window``/``evaluate`` already take the whole
        population (leading axis N) and are not vmapped here.
      max_repeats: how many rollbacks in a row a member may make to the same snapshot
        (one that has not improved since). Past that, a rollback asked for by the
        tuner or the Loop is refused: the member keeps its current state and moves on
        (its hyperparameters still change as the tuner says). A diverged state is
        always restored; past the cap its learning rate is shrunk as well.
      shrink: ``{name: factor}`` (factors in (0, 1)): when a member is restored from a
        divergence more than ``max_repeats`` times in a row, its factor for ``name``
        is multiplied by this, and from then on the tuner's value for it is applied
        times that factor (``Carry.shrink``), so a tuner that keeps proposing the
        value that diverged cannot make it diverge again (the tuner observes its own
        value, not the shrunk one; a copy takes its parent's factors; a single run's
        spawn starts again at 1). ``None``: 0.1 for every
        ``learning_rate`` (or ``.../learning_rate``) in the space; ``{}``: never.
      windows: the run's planned length in windows, passed to the tuner as
        ``Observation.horizon`` (``bayes`` and ``pb2`` need it, unless given a
        ``horizon`` of their own). ``hj.Loop.run`` sets it to ``max_windows``.
      select: ``"score"`` (default) or ``"loss"``: how the best member
        (``Carry.best``, the model a run returns) is chosen among every member and
        window; ``"loss"`` (the lowest validation loss) for a small validation set.
        The rule and why: :mod:`hagfish_jax.core.best`. Only the final choice (and a
        single run's snapshot, its best window) follows it; the tuner ranks by score.
      shared_key: a population's members train each window with the same key (the
        same data order and dropout masks): faster to compile and run, less diverse,
        off by default. See :func:`hagfish_jax.core.members.members`.

    Divergence: a window is scored NaN when the task flags it (``metrics["diverged"]``)
    or when any floating value of the state is NaN or infinite (see
    :func:`hagfish_jax.diverged`); a NaN-scored member is rolled back to its snapshot
    whatever the tuner proposes.

    Returns:
      A :class:`Program`.

    Raises:
      TypeError: ``task`` lacks part of the protocol, or ``tuner`` is not a Tuner.
      ValueError: ``population`` below 1, a population tuner on a single run,
        ``max_repeats`` below 1, a ``shrink`` factor outside (0, 1) or name outside
        the space, or ``select`` not ``"score"``/``"loss"``. With ``select="loss"``, a
        task whose ``evaluate`` reports neither ``"val_loss"`` nor ``"tie_break"``
        raises when the window is first traced, before anything runs.
    """
    check_task(task, "program.build")
    if not (callable(getattr(tuner, "init", None)) and callable(getattr(tuner, "update", None))):
        raise TypeError(f"program.build: tuner must be a hagfish_jax.Tuner, got {tuner!r}")
    n = None if population is None else integer("program.build: population", population, 1)
    pop_tuner = bool(getattr(tuner, "population", False))
    if pop_tuner and n is None:
        raise ValueError(
            "program.build: a population tuner (pbt, pb2) needs population=N, got a single run"
        )
    per_member = n is not None and not pop_tuner
    space = task.space
    dynamic = () if space is None else tuple(k for k in space.names if k in space.dynamic)
    max_repeats = integer("program.build: max_repeats", max_repeats, 1)
    windows = None if windows is None else integer("program.build: windows", windows, 1)
    factors = shrink_factors(shrink, dynamic, "program.build")
    best_lib.check_select("program.build", select)

    def names_of(state) -> tuple[str, ...]:
        known = get_hparams(state)
        if space is None:
            return tuple(known)
        return tuple(k for k in space.names if k in known)

    def in_force(state) -> HParams:
        hp = get_hparams(state)
        return {k: hp[k] for k in names_of(state)}

    _train, _evaluate = members(task, n, vectorized, bool(shared_key))

    def _copied(state, parents):
        """Member ``i`` becomes a copy of ``parents[i]``: the model (what
        ``task.restore`` takes from a snapshot), never the task's clock, data cursor,
        environments or episode statistics, which stay the member's own."""
        copied = population_lib.exploit(state, parents)
        if task.restore is None:
            return copied
        return jax.vmap(task.restore)(state, copied)

    def _tuner_init(key, hp):
        if per_member:
            return jax.vmap(tuner.init)(jax.random.split(key, n), hp)
        return tuner.init(key, hp)

    # -- starting ---------------------------------------------------------------------
    def start(key: jax.Array, state: Any) -> Carry:
        if n is not None:
            size = population_lib.size(state)
            if size != n:
                raise ValueError(f"program.start: the state holds {size} members, not {n}")
        hp = in_force(state)
        one = state if n is None else best_lib.member(state, 0)
        shape = () if n is None else (n,)
        best = Best(
            state=one,
            hparams={k: v if n is None else v[0] for k, v in hp.items()},
            score=jnp.asarray(-jnp.inf, jnp.float32),
            window=jnp.asarray(-1, jnp.int32),
            member=jnp.asarray(-1, jnp.int32),
            loss=jnp.asarray(jnp.inf, jnp.float32),
        )
        k_tuner, key = jax.random.split(key)
        return Carry(
            state=state,
            tuner_state=_tuner_init(k_tuner, hp),
            # a single run's snapshot is its best member: the state lives once, in best
            snap=snapshot_lib.init(None if n is None else state, population=n),
            best=best,
            alive=jnp.ones(shape, jnp.bool_),
            score=jnp.full(shape, jnp.nan, jnp.float32),
            window=jnp.asarray(0, jnp.int32),
            exploring=jnp.zeros(shape, jnp.bool_),
            repeats=jnp.zeros(shape, jnp.int32),
            shrink={k: jnp.ones(shape, jnp.float32) for k in factors if k in hp},
            key=key,
        )

    def init(key: jax.Array, hparams: Mapping[str, Any] | None = None) -> Carry:
        hp = {**task.default_hparams, **(hparams or {})}
        k_init, key = jax.random.split(key)
        if n is None:
            state = task.init(k_init, hp)
        else:
            hp = {k: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (n,)) for k, v in hp.items()}
            state = jax.vmap(task.init)(jax.random.split(k_init, n), hp)
        return start(key, state)

    # -- one window -------------------------------------------------------------------
    def train(carry: Carry) -> tuple[Carry, dict]:
        key, k = jax.random.split(carry.key)
        state, metrics = _train(carry.state, k, carry.alive)
        return carry._replace(state=state, window=carry.window + 1, key=key), metrics

    def evaluate(carry: Carry) -> dict:
        return _evaluate(carry.state)

    def score_of(carry: Carry, train_metrics: Mapping[str, Any], evaluation: Mapping) -> jax.Array:
        # an exploded window, a broken state or a masked member scores NaN: never best
        return window_score(evaluation["score"], train_metrics, carry.state, carry.alive, n)

    def tune(
        carry: Carry,
        train_metrics: Mapping[str, Any],
        evaluation: Mapping[str, Any],
        rollback: jax.Array | bool = False,
    ) -> tuple[Carry, dict]:
        state, alive = carry.state, carry.alive
        hp = in_force(state)
        # the tuner observes its own values: the shrink is applied on top, once
        seen = unscaled(hp, carry.shrink, space)
        score = score_of(carry, train_metrics, evaluation)
        train_score, val_loss, train_loss = (
            None if evaluation.get(k) is None else jnp.asarray(evaluation[k], jnp.float32)
            for k in ("train_score", "val_loss", "train_loss")
        )
        if per_member:  # the run's length is static: closed over, not vmapped
            obs = Observation(
                score, train_score, hparams=seen, loss=val_loss, train_loss=train_loss
            )
            update = lambda s, o: tuner.update(s, o._replace(horizon=windows))  # noqa: E731
            proposal, tuner_state = jax.vmap(update)(carry.tuner_state, obs)
        else:
            obs = Observation(
                score,
                train_score,
                hparams=seen,
                alive=alive if n else None,
                horizon=windows,
                loss=val_loss,
                train_loss=train_loss,
            )
            proposal, tuner_state = tuner.update(carry.tuner_state, obs)
        window = carry.window - 1
        loss = evaluation.get("tie_break", evaluation.get("val_loss"))
        if loss is None and select == "loss":
            raise ValueError(
                "program.build(select='loss'): the task's evaluate reports neither "
                f"'val_loss' nor 'tie_break' (it reports {sorted(evaluation)})"
            )
        loss = jnp.full(score.shape, jnp.inf) if loss is None else jnp.asarray(loss, jnp.float32)
        best = best_lib.update(carry.best, select, n, state, hp, score, loss, window)
        if n is None:  # one run: the snapshot is the best member (same rule, kept once)
            snap = snapshot_lib.Snapshot(None, best.score)
            target = best.state
        else:
            snap = snapshot_lib.update(carry.snap, state, score)
            target = snap.state
        asked = jnp.broadcast_to(jnp.asarray(proposal.rollback) | rollback, score.shape)
        broken = ~jnp.isfinite(score)  # diverged (or never scored): always restored
        # the rollback target moved (for one run a tie won on loss moves it too)
        improved = best.window != carry.best.window if n is None else snap.score > carry.snap.score
        repeats = jnp.where(improved, 0, carry.repeats)
        capped = repeats >= max_repeats
        back = (broken | (asked & ~capped)) & alive
        repeats = jnp.where(back, repeats + 1, repeats)
        if task.restore is not None:  # the task decides what a rollback brings back
            keep = task.restore if n is None else jax.vmap(task.restore)
            target = keep(state, target)
        own = True  # the member goes on as itself (not replaced by a copy)
        held = score  # the score of the weights each member holds from now on
        if n is None:  # a scalar flag: one branch runs, the state is not selected leaf by leaf
            new_state = jax.lax.cond(back, lambda: target, lambda: state)
            parents, shrink = jnp.asarray(-1, jnp.int32), carry.shrink
        else:
            new_state = snapshot_lib.where(back, target, state)
            parents = population_lib.resolve(proposal.parents, n)
            shrink = carry.shrink
            if not per_member and jnp.ndim(proposal.parents):  # a population tuner's
                # copies (a single-run tuner's "keep" copies nothing: no gathers compiled)
                own = parents == jnp.arange(n)  # a copy starts afresh (the parent's values)
                # one branch: the copies run only in a window that replaces someone,
                # and read `parents` as computed once (not recomputed leaf by leaf)
                # (a copy also takes its parent's shrink factors, and its parent's score:
                # prune, spawn and the ensemble rank the weights it now holds by it)
                new_state, snap, (shrink, held) = jax.lax.cond(
                    jnp.all(own),
                    lambda s, sn, rest, p: (s, sn, rest),
                    lambda s, sn, rest, p: (
                        _copied(s, p),
                        population_lib.exploit(sn, p),
                        population_lib.exploit(rest, p),
                    ),
                    new_state, snap, (shrink, held), parents,
                )
                repeats = jnp.where(own, repeats, 0)
        # restored from the same divergence too often: this member's steps stay smaller
        again = back & broken & capped & own
        shrink = {k: jnp.where(again, v * factors[k], v) for k, v in shrink.items()}
        new_hp = scaled(proposal.hparams, shrink, space)
        new_state = set_hparams(new_state, new_hp)
        row = {
            **evaluation,
            **{f"window_{k}": v for k, v in train_metrics.items()},
            "score": score,
            "rollback": back,
            "explore": carry.exploring,  # this window tried a tuner's trial value
            "window": window,
            **hp,
        }
        if n is not None:
            row.update(parent=parents, alive=alive)
        explore = jnp.zeros(score.shape, jnp.bool_)
        if proposal.explore is not None:
            explore = jnp.broadcast_to(jnp.asarray(proposal.explore, jnp.bool_), score.shape)
        carry = carry._replace(
            state=new_state,
            tuner_state=tuner_state,
            snap=snap,
            best=best,
            score=held,
            exploring=explore & alive,
            repeats=repeats.astype(jnp.int32),
            shrink=shrink,
        )
        return carry, row

    def window(carry: Carry, _: Any = None) -> tuple[Carry, dict]:
        carry, metrics = train(carry)
        return tune(carry, metrics, evaluate(carry))

    # -- prune and spawn --------------------------------------------------------------
    def prune(carry: Carry, k: int | jax.Array) -> Carry:
        if n is None:
            raise ValueError("program.prune: a single run has no members to prune")
        return carry._replace(alive=population_lib.prune(carry.alive, carry.score, k))

    # spawn noise goes on the dynamic hyperparameters (the learning rate without a space)
    def _noised(key, hp: HParams, scale, where) -> HParams:
        names = [k for k in hp if (k in dynamic if space is not None else k == "learning_rate")]
        return noised(key, hp, names, scale, where, space)

    def spawn(
        carry: Carry,
        key: jax.Array,
        count: int | jax.Array | None = None,
        scale: float | jax.Array = 0.2,
    ) -> tuple[Carry, jax.Array]:
        k_noise, k_tuner = jax.random.split(key)
        scale = jnp.asarray(scale, jnp.float32)
        if n is None:  # restart from this run's best state with noise
            best = carry.best.state
            if task.restore is not None:  # the model comes back, not the task's clock
                best = task.restore(carry.state, best)
            hp = _noised(k_noise, in_force(best), scale, True)
            state = set_hparams(best, hp)
            carry = carry._replace(  # a fresh tuner from the values in force: factors 1
                state=state,
                tuner_state=_tuner_init(k_tuner, hp),
                repeats=jnp.zeros_like(carry.repeats),
                shrink={k: jnp.ones_like(v) for k, v in carry.shrink.items()},
            )
            return carry, jnp.asarray(-1, jnp.int32)
        _, alive, parents = population_lib.spawn(carry.state, carry.alive, carry.score, count)
        state = _copied(carry.state, parents)
        filled = alive & ~carry.alive
        hp = _noised(k_noise, in_force(state), scale, filled)
        state = set_hparams(state, hp)
        snap = population_lib.exploit(carry.snap, parents)
        tuner_state = carry.tuner_state
        if per_member:  # a spawned member's tuner starts afresh from its values
            fresh = _tuner_init(k_tuner, hp)
            tuner_state = snapshot_lib.where(filled, fresh, tuner_state)
        score = jnp.take(carry.score, parents)
        carry = carry._replace(
            state=state,
            tuner_state=tuner_state,
            snap=snap,
            alive=alive,
            score=score,
            repeats=jnp.where(filled, 0, carry.repeats),
            shrink={k: jnp.where(filled, 1.0, v) for k, v in carry.shrink.items()},
        )
        return carry, parents

    return Program(  # traced with the garbage collector paused (core._trace)
        init=quiet_gc(init),
        start=quiet_gc(start),
        train=train,  # the members' training and evaluation are quiet already
        evaluate=evaluate,
        train_members=_train,
        evaluate_members=_evaluate,
        score=score_of,
        tune=quiet_gc(tune),
        window=quiet_gc(window),
        prune=quiet_gc(prune),
        spawn=quiet_gc(spawn),
        population=n,
        names=None if space is None else tuple(space.names),
        windows=windows,
    )


@quiet_gc
def scan(program: Program, carry: Carry, windows: int) -> tuple[Carry, dict]:
    """``windows`` tuned windows in one ``lax.scan`` (jit it, or call it inside jit);
    the rows come back stacked with a leading ``windows`` axis."""
    return jax.lax.scan(program.window, carry, None, length=int(windows))
