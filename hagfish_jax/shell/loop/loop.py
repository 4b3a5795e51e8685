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

import math
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ...core.base import Tuner
from ...core.hparams import get_hparams
from ...core.program import Carry, build, compiled
from ...core.space import Space
from ...core.tuners import fixed
from .backoff import Backoff, Phase
from .callbacks import Advice, Callback, RecordRun, overrides
from .checkpoints import Checkpoints
from .control import MetaController, RegimeDetector
from .result import LoopResult, Progress, population_ensemble, variants_ensemble
from .steering import Steering, as_task, check_options, floats

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
        plain Python (a host-side environment).
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
      jit: compile the task's functions (default: yes for ``task=``, no for
        ``step``/``evaluate``, which are called as given).
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
    ):
        task, space, vectorized = as_task(step, evaluate, task, space)
        if restore is not None:
            task = task.replace(restore=restore)
        check_options(save_every, target_patience, max_ensemble_size, advisor)
        self.task = task
        self.population = population
        self.backoff = backoff or Backoff()
        self.checkpoints = Checkpoints(checkpoint_dir, keep_last) if checkpoint_dir else None
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
        self.callback_errors: list[str] = []
        self._build = dict(
            vectorized=vectorized, max_repeats=max_repeats, select=select, shared_key=shared_key
        )
        self._jit = not vectorized if jit is None else bool(jit)
        self.program = build(task, tuner or fixed(), population, **self._build)
        self._compile(vectorized, self._jit)

    def _plan(self, windows: int) -> None:
        """Tell the program the run's length (the tuners' ``Observation.horizon``); a
        new length builds the tuning part again, the compiled training is shared."""
        if self.program.windows != windows:
            self.program = build(
                self.task, self.tuner or fixed(), self.population, windows=windows, **self._build
            )
            self._compile(self._build["vectorized"], self._jit)

    def _compile(self, vectorized: bool, jit: bool) -> None:
        p = self.program
        if jit:  # one compiled copy of the task's training per task, whatever the tuner
            self._train_members, self._evaluate_members = compiled(
                self.task, p.population, vectorized, self._build["shared_key"]
            )
        else:
            self._train_members, self._evaluate_members = p.train_members, p.evaluate_members
        self._init_fn, self._start_fn = jax.jit(p.init), jax.jit(p.start)
        self._score_fn = jax.jit(p.score)
        self._tune_fn = jax.jit(p.tune)
        self._spawn_fn = jax.jit(p.spawn)
        self._prune_fn = jax.jit(p.prune) if p.population else None

    # -- requests from callbacks --------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the current window (returns the best state)."""
        self._stop = True

    def prune(self, k: int) -> None:
        """Mask the ``k`` worst alive members after the current window (a population)."""
        if self.population is None:
            raise ValueError("Loop.prune: a single run has no members to prune")
        self._prune = int(k)

    # -- helpers -------------------------------------------------------------------------
    def _fire(self, name: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is None:
                continue
            try:
                fn(self, *args)
            except Exception as err:  # noqa: BLE001 - a callback must not stop training
                msg = f"{type(cb).__name__}.{name}: {type(err).__name__}: {err}"
                self.callback_errors.append(msg)
                warnings.warn(f"callback failed, training goes on: {msg}", stacklevel=3)

    def _wants(self, name: str) -> bool:
        return any(overrides(cb, name) for cb in self.callbacks)

    def _save(self, r: Progress, window: int, carry: Carry, score: float | None) -> None:
        if self.checkpoints is not None:
            self.checkpoints.save(
                window,
                carry,
                score,
                backoff=self.backoff.state_dict(),
                history=r.history,
                rollbacks=r.rollbacks,
                spawns=r.spawns,
            )

    # -- the run -------------------------------------------------------------------------
    def run(
        self,
        state: Any = None,
        key: jax.Array | None = None,
        max_windows: int | None = None,
        *,
        hparams: dict[str, Any] | None = None,
    ) -> LoopResult:
        """Train for up to ``max_windows`` windows; return a :class:`LoopResult`.

        ``state`` is where to start (a population's with a leading axis); ``None``
        builds it with the task's ``init`` from ``hparams`` (default: the task's
        defaults; for a population, ``(N,)`` arrays or scalars for every member).
        """
        if key is None:
            raise TypeError("Loop.run: key is required")
        if max_windows is None or int(max_windows) < 1:
            raise ValueError(f"Loop.run: max_windows must be >= 1, got {max_windows!r}")
        self._stop, self._prune, self.callback_errors = False, None, []
        self._plan(int(max_windows))
        self._max_windows = int(max_windows)
        self.backoff.reset()  # a fresh schedule; a resumed run loads its own below
        r = Progress()
        carry = self._begin(state, key, hparams, r)
        self._fire("on_loop_start", carry.state)
        window = r.start - 1
        try:
            for window in range(r.start, int(max_windows)):
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
        return self._finish(carry, window + 1, r)

    def _begin(self, state, key, hparams, r: Progress) -> Carry:
        if state is None:  # compiled: an eager vmapped init dispatches op by op
            carry = self._init_fn(key, hparams)
        else:
            carry = self._start_fn(key, state)
        if self.checkpoints is not None and self.checkpoints.latest is not None:
            restored = self.checkpoints.restore(carry, "latest")
            if restored is not None:
                carry, entry = restored
                r.start = entry["window"] + 1
                if "backoff" in entry:
                    self.backoff.load_state_dict(entry["backoff"])
                r.history = list(entry.get("history", []))
                r.rollbacks, r.spawns = entry.get("rollbacks", 0), entry.get("spawns", 0)
                score, window = jax.device_get((carry.best.score, carry.best.window))
                r.best_score, r.best_window = float(score), int(window)
        return carry

    def _train(self, carry: Carry) -> tuple[Carry, dict]:
        key, k = jax.random.split(carry.key)
        state, metrics = self._train_members(carry.state, k, carry.alive)
        return carry._replace(state=state, window=carry.window + 1, key=key), metrics

    def _window(self, carry: Carry, window: int, r: Progress) -> Carry:
        carry, metrics = self._train(carry)
        self._fire("on_window_end", window, metrics)
        if self.backoff.due(window):
            carry = self._evaluate(carry, metrics, window, r)
        if self._prune is not None and r.reason == "budget":
            carry = self._prune_members(carry, window, self._prune)
            self._prune = None
        if self._stop:
            r.reason = "stopped"
        return carry

    def _headline(self, score: np.ndarray) -> tuple[float, int]:
        """The run's score (a population's: its best member's) and that member."""
        if self.population is None:
            return float(score), 0
        finite = np.where(np.isfinite(score), score, -np.inf)
        member = int(np.argmax(finite))
        return float(score[member]), member

    def _evaluate(self, carry: Carry, metrics: dict, window: int, r: Progress) -> Carry:
        """Score the window, let the backoff judge it, tune, then react to the phase."""
        ev, headline, d = self._observe(carry, metrics, window, r)
        carry = self._tune(carry, metrics, ev, headline, d, window, r)
        return self._react(carry, headline, d, window, r)

    def _observe(self, carry: Carry, metrics: dict, window: int, r: Progress):
        ev = self._evaluate_members(carry.state)
        score = np.asarray(jax.device_get(self._score_fn(carry, metrics, ev)))
        headline, member = self._headline(score)
        train = ev.get("train_score")
        if train is not None:
            train = float(np.asarray(jax.device_get(train)).reshape(-1)[member])
        explore = bool(np.asarray(jax.device_get(carry.exploring)).reshape(-1)[member])
        d = self.backoff.observe(window, headline, explore)
        transition = None if not d.transition else tuple(p.value for p in d.transition)
        self._fire("on_evaluation", window, dict(ev), transition)
        entry = {"window": window, "score": headline, "train_score": train, "phase": d.phase.value}
        if self.population is not None:
            entry["member"] = member
        for k in ("val_loss", "train_loss"):  # what an advisor's diagnosis reads
            if k in ev:
                v = float(np.asarray(jax.device_get(ev[k])).reshape(-1)[member])
                entry[k] = v if math.isfinite(v) else None
        r.history.append(entry)
        return ev, headline, d

    def _tune(
        self, carry: Carry, metrics, ev, headline: float, d, window: int, r: Progress
    ) -> Carry:
        """The program's tune on device (the backoff's degradation is a forced rollback),
        then what the host needs: rollbacks, the best member, callbacks, checkpoints."""
        carry, row = self._tune_fn(carry, metrics, ev, np.bool_(d.degraded))
        rolled, best_score, best_window = jax.device_get(
            (row["rollback"], carry.best.score, carry.best.window)
        )
        if self._wants("on_row"):
            self._fire("on_row", window, jax.device_get(row))
        if int(best_window) == window:  # a better score, or the same with a lower loss
            r.best_score, r.best_window = float(best_score), window
            self._save(r, window, carry, r.best_score)
            self._fire("on_improvement", window, r.best_score)
        elif self.save_every and window % self.save_every == 0:
            self._save(r, window, carry, headline)
        if d.degraded:
            self._fire("on_degradation", window, headline)
        if np.any(rolled):
            r.rollbacks += int(np.sum(rolled))
            self.backoff.reactivate(window)  # restarted from the best: evaluate often again
            self._fire("on_rollback", window, r.best_window)
        if self.tuner is not None and self._wants("on_hparams_update"):
            hp = jax.device_get(self._in_force(carry.state))
            hp = floats(hp) if not self.population else hp
            self._fire("on_hparams_update", window, hp, "tuner")
        return carry

    def _react(self, carry: Carry, headline: float, d, window: int, r: Progress) -> Carry:
        """Plateau: ask the advisor. DORMANT: the controller. Then the target."""
        if d.transition and d.transition[1] is Phase.COOLING:
            self._fire("on_plateau", window, headline)
            if self.advisor is not None:
                carry = self._advise(carry, window, r)
        if d.transition and d.transition[1] in (Phase.DORMANT, Phase.WATCHDOG):
            self._fire("on_dormant", window, headline)
            if d.transition[1] is Phase.DORMANT:
                carry = self._dormant(carry, window, r)
        if self.target is not None and math.isfinite(headline) and headline >= self.target:
            r.on_target += 1
            if r.on_target >= self.target_patience:
                r.reason = "target"
        else:
            r.on_target = 0
        return carry

    def _in_force(self, state) -> dict:
        hp = get_hparams(state)
        names = self.program.names
        return hp if names is None else {k: hp[k] for k in names if k in hp}

    def _finish(self, carry: Carry, windows: int, r: Progress) -> LoopResult:
        scored = r.best_window >= 0
        member = int(jax.device_get(carry.best.member)) if scored else 0
        if scored:
            final, hp = carry.best.state, carry.best.hparams
        else:
            final = carry.state
            if self.population is not None:
                final = jax.tree.map(lambda x: x[0], final)
            hp = self._in_force(final)
        if self.checkpoints is not None and r.error is None and scored:
            self._save(r, windows - 1, carry, None)
        if self.population is None:
            if scored:
                r.members[r.best_window] = (r.best_score, final)
            ensemble, states = variants_ensemble(r.members, self.max_ensemble_size)
        else:
            ensemble, states = population_ensemble(carry, self.max_ensemble_size)
        result = LoopResult(
            state=final,
            reason=r.reason,
            best_score=r.best_score,
            best_window=r.best_window,
            windows=windows,
            evaluations=len(r.history),
            rollbacks=r.rollbacks,
            spawns=r.spawns,
            phase=self.backoff.phase.value,
            regime=self.regime.classify([h["score"] for h in r.history]).value,
            hparams=floats(jax.device_get(hp)),
            history=r.history,
            error=r.error,
            callback_errors=list(self.callback_errors),
            ensemble=ensemble,
            ensemble_states=states,
            carry=carry,
            population=self.population,
            best_member=member,
        )
        self._fire("on_loop_stop", result)
        return result
