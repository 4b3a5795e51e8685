"""``Loop``: we own the loop, you own the model.

The loop drives the tuned program of :mod:`hagfish_jax.core.program` one window at a
time, for one run or a population: it trains every window, evaluates on the backoff
schedule, and hands each evaluation to the program's ``tune`` (tuner, snapshots and
rollbacks, exploit, new hyperparameters, the best member: all on device). Between
calls, in Python, it reads the score, decides the backoff phase, saves checkpoints,
asks an advisor on a plateau, prunes and spawns on DORMANT, and fires callbacks.
However the run ends (budget, ``stop()``, DORMANT, target reached, an exception in
your code), the returned state is the best one.
"""

from __future__ import annotations

import itertools
import math
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ...core.base import Tuner
from ...core.members import members
from ...core.program import Carry, build, compiled, recent_only
from ...core.space import Space
from ...core.tuners import fixed
from .backoff import Backoff
from .callbacks import Advice, Callback, RecordRun
from .checkpoints import Checkpoints
from .control import MetaController, RegimeDetector
from .multihost import on_mesh
from .result import ENDED, LoopResult, Progress, finish
from .steering import Steering, as_task, check_options, floats
from .stream import next_window, windows_of

__all__ = ["Advice", "Callback", "Loop", "LoopResult", "RecordRun"]


class Loop(Steering):
    """The autonomous training loop, over one run or a population.

    Give it a task (``task=``, see :class:`hagfish_jax.Task`) and the loop compiles the
    tuned program itself, or your own ``step``/``evaluate`` functions (positional, as
    below); with ``population=N`` the state has a leading axis of N members.

    >>> import jax, jax.numpy as jnp, optax, hagfish_jax as hj
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> @jax.jit
    ... def step(state, key):
    ...     u, opt = tx.update(2 * state["w"], state["opt"], state["w"])
    ...     return {"w": state["w"] + u, "opt": opt}, {}
    >>> evaluate = jax.jit(lambda state: {"score": -jnp.sum(state["w"] ** 2)})
    >>> w = jnp.ones(3)
    >>> result = hj.Loop(step, evaluate).run({"w": w, "opt": tx.init(w)}, jax.random.key(0), 5)
    >>> result.reason, result.best_window
    ('budget', 4)

    Args:
      step: ``(state, key) -> (state, metrics)``: one window of training, for the whole
        state (a population's too). Called as given: jit it yourself; it may also be
        plain Python (a host-side environment). On live data (``run(data=...)``):
        ``step(state, key, train)`` and ``evaluate(state, validation)``.
      evaluate: ``state -> metrics`` with ``"score"`` (higher is better) and optionally
        ``"train_score"``.
      backoff: a :class:`Backoff` (its options decide the schedule and degradation).
      checkpoint_dir: where to save orbax checkpoints of the whole tuned program
        (members, tuner state, snapshots, key; best + last ``keep_last``); ``None``
        keeps everything in memory. An existing directory is resumed.
      keep_last: checkpoints kept besides the best.
      save_every: also save every this many windows (for resuming); ``None``: only
        on a new best and at the end.
      tuner: optional; sees every evaluation. A single-run tuner on a population
        runs per member; ``pbt``/``pb2`` rank the members.
      space: the search space (default the task's), used to clamp advice and spawn
        noise.
      advisor: optional object with ``advise(context) -> Advice``, asked on plateau.
      controller: the :class:`MetaController` consulted on DORMANT. A single run:
        SPAWN restarts from the best state with hyperparameter noise; STOP, PRUNE and
        NO_OP stop. A population: PRUNE masks the worse half of the alive members,
        SPAWN refills them with noisy copies of the best; STOP and NO_OP stop.
      regime: the :class:`RegimeDetector` for the report.
      target: stop once the score is ``>= target`` for ``target_patience`` evaluations.
      callbacks: :class:`Callback` objects.
      max_ensemble_size: how many best states the result keeps as an ensemble (a
        single run: one per variant; a population: its best alive members).
      task: a :class:`hagfish_jax.Task` instead of ``step``/``evaluate``.
      population: N members (leading axis), or ``None`` for one run.
      jit: compile the task's functions (default: yes for ``task=`` or a ``mesh``, no
        for ``step``/``evaluate``, which are called as given).
      restore: ``(current, best) -> state``: what a rollback brings back (default the
        whole best state; see :class:`hagfish_jax.Task`). A state that carries its own
        clock or data cursor keeps it from ``current``, or a rollback replays the same
        windows (``hj.restore_only("params", "opt_state")``).
      max_repeats: rollbacks in a row to one snapshot before the program refuses a
        healthy member's next one (see :func:`hagfish_jax.program.build`).
      select: ``"score"`` or ``"loss"``: how the returned best model is chosen among
        every member and window (see :func:`hagfish_jax.program.build`); ``"loss"``
        (the lowest validation loss) for a small validation set.
      shared_key: a population's members train each window with the same key (the
        same data order and dropout masks; see :func:`hagfish_jax.program.build`).
      mesh: a ``jax.sharding.Mesh`` with a ``"pop"`` axis (``hj.distributed.make_mesh()``)
        to split the population over (N a multiple of its size): this process's devices,
        or every process's. Over several processes every process runs the same script;
        process 0 runs the callbacks, asks the advisor and decides ``stop()``/``prune()``
        for all; checkpoints go to a directory all of them see (README, "One population
        over many processes").
    """

    def __init__(
        self,
        step: Callable | None = None,
        evaluate: Callable | None = None,
        backoff: Backoff | None = None,
        checkpoint_dir: str | None = None,
        keep_last: int = 2,
        save_every: int | None = None,
        tuner: Tuner | None = None,
        space: Space | None = None,
        advisor: Any = None,
        controller: MetaController | None = None,
        regime: RegimeDetector | None = None,
        target: float | None = None,
        target_patience: int = 1,
        callbacks: Sequence[Callback] = (),
        max_ensemble_size: int = 3,
        *,
        task: Any = None,
        population: int | None = None,
        jit: bool | None = None,
        restore: Callable[[Any, Any], Any] | None = None,
        max_repeats: int = 3,
        select: str = "score",
        shared_key: bool = False,
        mesh: Any = None,
    ):
        task, space, vectorized = as_task(step, evaluate, task, space)
        self._mesh = on_mesh(mesh, population, jit)
        if restore is not None:
            task = task.replace(restore=restore)
        check_options(save_every, target_patience, max_ensemble_size, advisor)
        self.task = task
        self.population = population
        self.backoff = backoff or Backoff()
        self.checkpoints = None
        if checkpoint_dir:  # with a mesh over several processes, each writes its shards
            shared = self._mesh is not None and self._mesh.many
            self.checkpoints = Checkpoints(checkpoint_dir, keep_last, shared=shared)
        self.save_every = save_every
        self.tuner = tuner
        self.space = space
        self.advisor = advisor
        self.controller = controller or MetaController()
        self.regime = regime or RegimeDetector()
        self.target = target
        self.target_patience = int(target_patience)
        self.callbacks = list(callbacks)
        self.max_ensemble_size = int(max_ensemble_size)
        self._stop = False
        self._prune: int | None = None
        self.max_windows: int | None = None  # the current run's (None: while a stream lasts)
        self.best_member: int | None = None  # the member that holds the best score so far
        self.callback_errors: list[str] = []
        self._build = dict(
            vectorized=vectorized, max_repeats=max_repeats, select=select, shared_key=shared_key
        )
        self._jit = not vectorized if jit is None else bool(jit)
        self._data = False  # training on live data (run(data=...)): batches as arguments
        self._batches: tuple = ((), ())
        self.program = build(task, tuner or fixed(), population, **self._build)
        self._compile()

    def _plan(self, windows: int | None, data: bool) -> None:
        """Tell the program the run's length (the tuners' ``Observation.horizon``); a
        new length builds the tuning part again, the compiled training is shared."""
        if self.program.windows != windows or self._data != data:
            self._data = data
            self.program = build(
                self.task, self.tuner or fixed(), self.population, windows=windows, **self._build
            )
            self._compile()

    def _compile(self) -> None:
        p, b = self.program, self._build
        if self._data:  # live data: the past's scores were on other data (see _tune)
            p = p._replace(tune=lambda carry, *args, tune=p.tune: tune(recent_only(carry), *args))
        options = (self.task, p.population, b["vectorized"], b["shared_key"], self._data)
        if self._mesh is not None:  # the same calls, keeping the members split over the mesh
            fns = self._mesh.compile(p, *options)
        else:  # one compiled copy of the task's training per task, whatever the tuner
            train = (compiled if self._jit else members)(*options)
            prune = jax.jit(p.prune) if p.population else None
            fns = (*train, *map(jax.jit, (p.init, p.start, p.score, p.tune, p.spawn)), prune)
        (
            self._train_members,
            self._evaluate_members,
            self._init_fn,
            self._start_fn,
            self._score_fn,
            self._tune_fn,
            self._spawn_fn,
            self._prune_fn,
        ) = fns

    # -- requests from callbacks --------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the current window (returns the best state)."""
        self._stop = True

    def prune(self, k: int) -> None:
        """Mask the ``k`` worst alive members after the current window (a population)."""
        if self.population is None:
            raise ValueError("Loop.prune: a single run has no members to prune")
        self._prune = int(k)

    # -- the run -------------------------------------------------------------------------
    def run(
        self,
        state: Any = None,
        key: jax.Array | None = None,
        max_windows: int | None = None,
        *,
        hparams: dict[str, Any] | None = None,
        data: Any = None,
    ) -> LoopResult:
        """Train for up to ``max_windows`` windows; return a :class:`LoopResult`.

        ``state`` is where to start (a population's with a leading axis); ``None``
        builds it with the task's ``init`` from ``hparams`` (default: the task's
        defaults; for a population, ``(N,)`` arrays or scalars for every member).

        ``data``: live data, a :class:`hagfish_jax.Stream` or any iterable of ``(train,
        validation)`` windows. Each window the loop pulls the next one and calls
        ``train_window(state, key, train)`` and ``evaluate(state, validation)`` (every
        member on the same batches); it trains while the stream lasts (``reason``
        ``"stream ended"``), or up to ``max_windows`` when given. A resumed run goes on
        with whatever the stream yields next.

        With ``checkpoint_dir``, a run resumes from its latest good checkpoint (written
        at the end of a window). One that had ended there (``"target"``, ``"dormant"``,
        ``"spawn budget spent"``) returns its result and trains nothing, whatever
        ``max_windows`` says.
        """
        if key is None:
            raise TypeError("Loop.run: key is required")
        if data is None and max_windows is None:
            raise ValueError("Loop.run: max_windows is required (unless data= is a stream)")
        if max_windows is not None and (int(max_windows) < 1 or int(max_windows) != max_windows):
            raise ValueError(f"Loop.run: max_windows must be an integer >= 1, got {max_windows!r}")
        feed = None if data is None else windows_of(data)
        self._stop, self._prune, self.callback_errors = False, None, []
        self.best_member = None
        self.max_windows = None if max_windows is None else int(max_windows)
        self._plan(self.max_windows, feed is not None)
        self.backoff.reset()  # a fresh schedule; a resumed run loads its own below
        r = Progress()
        carry = self._begin(state, key, hparams, r)
        self._fire("on_loop_start", carry.state)
        window = r.start - 1
        stop = itertools.count() if self.max_windows is None else range(self.max_windows)
        if r.reason != "budget":  # resumed from a run that had ended: nothing to train
            stop = ()
        try:
            for window in itertools.islice(stop, r.start, None):
                if feed is not None:
                    try:
                        self._batches = self._placed(next_window(feed))
                    except Exception:
                        window -= 1  # this window never started
                        raise
                    if self._batches is None:
                        r.reason, window = "stream ended", window - 1
                        break
                carry = self._window(carry, window, r)
                if r.reason != "budget":
                    break
        except Exception as err:  # noqa: BLE001 - the best state is returned, never lost
            r.reason, r.error = f"error: {type(err).__name__}: {err}", err
            warnings.warn(
                "Loop: the step or evaluation raised; returning the best state.\n"
                + "".join(traceback.format_exception(err))[-2000:],
                stacklevel=2,
            )
        finally:
            self._batches = ((), ())
        return self._finish(carry, window + 1, r)

    def _begin(self, state, key, hparams, r: Progress) -> Carry:
        if self._mesh is not None:  # the same host values on every process, laid out
            key, hparams = self._mesh.inputs(key), self._mesh.inputs(hparams)
            state = None if state is None else self._mesh.place(state)
        if state is None:  # compiled: an eager vmapped init dispatches op by op
            carry = self._init_fn(key, hparams)
        else:
            carry = self._start_fn(key, state)
        if self.checkpoints is not None and self.checkpoints.latest is not None:
            restored = self.checkpoints.restore(
                carry, "latest", like_for=lambda entry: self._saved_like(carry, entry)
            )
            if restored is not None:
                tree, entry = restored
                carry = self._resumed(tree, entry, r)
                score, window, member = self._get(
                    (carry.best.score, carry.best.window, carry.best.member)
                )
                r.best_score, r.best_window = float(score), int(window)
                self.best_member = int(member)
        return carry

    def _resumed(self, tree: Any, entry: dict, r: Progress) -> Carry:
        """The run as its checkpoint left it, at the end of ``entry["window"]``."""
        carry = tree["carry"] if isinstance(tree, dict) else tree
        r.start = entry["window"] + 1
        if "backoff" in entry:
            self.backoff.load_state_dict(entry["backoff"])
        r.history = list(entry.get("history", []))
        r.rollbacks, r.spawns = entry.get("rollbacks", 0), entry.get("spawns", 0)
        r.on_target = entry.get("on_target", 0)
        if entry.get("reason") in ENDED:  # it ended there: resuming returns its result
            r.reason = entry["reason"]
        for w, score in entry.get("variants", []):  # a single run's earlier variants
            r.members[int(w)] = (float(score), tree["variants"][str(w)])
        return carry

    def _train(self, carry: Carry) -> tuple[Carry, dict]:
        if self._mesh is not None:  # one compiled call splits the key and counts the window
            return self._mesh.train(self._train_members, carry, self._batches[0])
        key, k = jax.random.split(carry.key)
        state, metrics = self._train_members(carry.state, k, carry.alive, *self._batches[0])
        return carry._replace(state=state, window=carry.window + 1, key=key), metrics

    def _window(self, carry: Carry, window: int, r: Progress) -> Carry:
        carry, metrics = self._train(carry)
        self._fire("on_window_end", window, metrics)
        if self._data or self.backoff.due(window):  # live data: a validation window each
            carry = self._evaluate(carry, metrics, window, r)
        if self._mesh is not None:  # process 0's requests hold for every process
            self._stop, self._prune = self._mesh.agree(self._stop, self._prune)
        if self._prune is not None and r.reason == "budget":
            carry = self._prune_members(carry, window, self._prune)
            self._prune = None
        if self._stop:
            r.reason = "stopped"
        if r.save is not None:  # saved once the window is done: resuming goes on from here
            (score,), r.save = r.save, None
            self._save(r, window, carry, score)
        return carry

    def _evaluate(self, carry: Carry, metrics: dict, window: int, r: Progress) -> Carry:
        """Score the window, let the backoff judge it, tune, then react to the phase."""
        ev, headline, d = self._observe(carry, metrics, window, r)
        carry = self._tune(carry, metrics, ev, headline, d, window, r)
        return self._react(carry, headline, d, window, r)

    def _observe(self, carry: Carry, metrics: dict, window: int, r: Progress):
        ev = self._evaluate_members(carry.state, *self._batches[1])
        read = {k: ev[k] for k in ("train_score", "val_loss", "train_loss") if k in ev}
        score, read, explore = self._get(
            (self._score_fn(carry, metrics, ev), read, carry.exploring)
        )
        headline, member = self._headline(np.asarray(score))
        read = {k: np.asarray(v).reshape(-1)[member] for k, v in read.items()}
        train = float(read["train_score"]) if "train_score" in read else None
        d = self.backoff.observe(window, headline, bool(np.asarray(explore).reshape(-1)[member]))
        transition = None if not d.transition else tuple(p.value for p in d.transition)
        self._fire("on_evaluation", window, dict(ev), transition)
        entry = {"window": window, "score": headline, "train_score": train, "phase": d.phase.value}
        if self.population is not None:
            entry["member"] = member
        for k in ("val_loss", "train_loss"):  # what an advisor's diagnosis reads
            if k in read:
                entry[k] = float(read[k]) if math.isfinite(read[k]) else None
        r.history.append(entry)
        return ev, headline, d

    def _tune(
        self, carry: Carry, metrics, ev, headline: float, d, window: int, r: Progress
    ) -> Carry:
        """The program's tune on device (the backoff's degradation is a forced rollback),
        then what the host needs: rollbacks, the best member, callbacks, checkpoints.

        On live data, scores of different windows come from different data: the best
        is this window's best member (the one returned, the rollback target on a
        divergence), and a lower score than earlier is no reason to roll back."""
        degraded = np.bool_(d.degraded and not self._data)
        carry, row = self._tune_fn(carry, metrics, ev, degraded)
        rolled, best_score, best_window, member = self._get(
            (row["rollback"], carry.best.score, carry.best.window, carry.best.member)
        )
        self.best_member = int(member) if int(best_window) >= 0 else None
        if self._wants("on_row"):
            self._fire("on_row", window, self._get(row))
        # a checkpoint is written at the end of the window (Loop._window), once the
        # rollbacks, the advisor, spawns and prunes it brings are done
        if self._data:
            r.best_score, r.best_window = float(best_score), int(best_window)
            if self.save_every and window % self.save_every == 0:
                r.save = (headline,)
        elif int(best_window) == window:  # a better score, or the same with a lower loss
            r.best_score, r.best_window = float(best_score), window
            r.save = (r.best_score,)
            self._fire("on_improvement", window, r.best_score)
        elif self.save_every and window % self.save_every == 0:
            r.save = (headline,)
        if degraded:
            self._fire("on_degradation", window, headline)
        if np.any(rolled):
            r.rollbacks += int(np.sum(rolled))
            self.backoff.reactivate(window)  # restarted from the best: evaluate often again
            self._fire("on_rollback", window, r.best_window)
        if self.tuner is not None and self._wants("on_hparams_update"):
            hp = self._get(self._in_force(carry.state))
            hp = floats(hp) if not self.population else hp
            self._fire("on_hparams_update", window, hp, "tuner")
        return carry

    def _finish(self, carry: Carry, windows: int, r: Progress) -> LoopResult:
        result = finish(self, carry, windows, r)
        self._fire("on_loop_stop", result)
        return result
