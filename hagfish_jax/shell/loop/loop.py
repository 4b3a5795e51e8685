"""``Loop``: we own the loop, you own the model.

The loop calls your jitted ``step(state, key) -> (state, metrics)`` once per window
and your jitted ``evaluate(state) -> {"score", ["train_score"]}`` on the backoff
schedule. Between calls, in Python, it keeps the best state, saves checkpoints,
rolls back on confirmed degradation, consults an advisor on a plateau, runs a tuner,
spawns a variant when the run goes dormant, and fires callbacks. However the run
ends (budget, ``stop()``, DORMANT, target reached, an exception in your code), the
returned state is the best one.
"""

from __future__ import annotations

import dataclasses
import math
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ...core.base import Observation, Tuner
from ...core.ensemble import weights as ensemble_weights
from ...core.hparams import get_hparams, set_hparams
from ...core.space import Space
from .backoff import Backoff, Phase
from .checkpoints import Checkpoints
from .control import Action, MetaController, RegimeDetector, spawn_noise

__all__ = ["Advice", "Callback", "Loop", "LoopResult", "RecordRun"]


class Advice(NamedTuple):
    """What an advisor proposes: new values, why, and free-form flags."""

    hparams: dict[str, float]
    rationale: str = ""
    flags: tuple[str, ...] = ()


class Callback:
    """Override any of these; each receives the loop first. Exceptions are caught."""

    def on_loop_start(self, loop, state): ...
    def on_window_end(self, loop, window, metrics): ...
    def on_evaluation(self, loop, window, evaluation, transition): ...
    def on_improvement(self, loop, window, score): ...
    def on_plateau(self, loop, window, score): ...
    def on_dormant(self, loop, window, score): ...
    def on_degradation(self, loop, window, score): ...
    def on_rollback(self, loop, window, best_window): ...
    def on_hparams_update(self, loop, window, hparams, source): ...
    def on_advice(self, loop, window, advice): ...
    def on_loop_stop(self, loop, result): ...


@dataclasses.dataclass
class LoopResult:
    """How a run ended, and its best state."""

    state: Any
    reason: str
    best_score: float
    best_window: int
    windows: int
    evaluations: int
    rollbacks: int
    spawns: int
    phase: str
    regime: str
    hparams: dict[str, float]
    history: list[dict[str, Any]]
    error: BaseException | None = None
    callback_errors: list[str] = dataclasses.field(default_factory=list)
    ensemble: list[dict[str, float]] = dataclasses.field(default_factory=list)
    ensemble_states: list[Any] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        gap = None
        best = next((h for h in self.history if h["window"] == self.best_window), None)
        if best is not None and best.get("train_score") is not None:
            gap = best["train_score"] - best["score"]
        return {
            "reason": self.reason,
            "best_score": self.best_score,
            "best_window": self.best_window,
            "validation_score": last.get("score"),
            "generalisation_gap": gap,
            "windows": self.windows,
            "evaluations": self.evaluations,
            "rollbacks": self.rollbacks,
            "spawns": self.spawns,
            "phase": self.phase,
            "regime": self.regime,
            "hparams": self.hparams,
            "ensemble": {f"window {m['window']}": m["weight"] for m in self.ensemble},
        }

    def report(self, file=None) -> dict[str, Any]:
        """Print the summary and return it."""
        s = self.summary()
        width = max(len(k) for k in s)
        for k, v in s.items():
            if isinstance(v, float):
                v = f"{v:.6g}"
            elif isinstance(v, dict):
                v = ", ".join(f"{a}={b:.4g}" for a, b in v.items())
            print(f"{k:<{width}}  {v}", file=file)
        return s


class Loop:
    """The autonomous training loop.

    Args:
      step: jitted ``(state, key) -> (state, metrics)``: one window of training.
      evaluate: jitted ``state -> metrics`` with ``"score"`` (higher is better) and
        optionally ``"train_score"``.
      backoff: a :class:`Backoff` (its options decide the schedule and degradation).
      checkpoint_dir: where to save orbax checkpoints (best + last ``keep_last``);
        ``None`` keeps everything in memory. An existing directory is resumed.
      keep_last: checkpoints kept besides the best.
      save_every: also save every this many windows (for resuming); ``None``: only
        on a new best and at the end.
      tuner: optional; updated after every evaluation, its proposal written with
        ``set_hparams`` (a rollback flag restores the best state first).
      space: the search space, used to clamp advice and spawn noise.
      advisor: optional object with ``advise(context) -> Advice``, asked on plateau.
      controller: the :class:`MetaController` consulted on DORMANT (SPAWN restarts
        from the best state with hyperparameter noise; STOP/PRUNE/NO_OP stop).
      regime: the :class:`RegimeDetector` for the report.
      target: stop once the score is ``>= target`` for ``target_patience`` evaluations.
      callbacks: :class:`Callback` objects.
      max_ensemble_size: how many of the best states (one per variant: the best
        before each spawn, and the final best) the result keeps as an ensemble,
        weighted by :func:`hagfish_jax.ensemble.weights` of their scores.
    """

    def __init__(
        self,
        step: Callable,
        evaluate: Callable,
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
    ):
        if not callable(step) or not callable(evaluate):
            raise TypeError("Loop: step and evaluate must be callables")
        if save_every is not None and (int(save_every) != save_every or save_every < 1):
            raise ValueError(f"Loop: save_every must be an integer >= 1, got {save_every!r}")
        if int(target_patience) < 1:
            raise ValueError(f"Loop: target_patience must be >= 1, got {target_patience!r}")
        if advisor is not None and not callable(getattr(advisor, "advise", None)):
            raise TypeError("Loop: advisor must have an advise(context) method")
        self.step, self.evaluate = step, evaluate
        self.backoff = backoff or Backoff()
        self.checkpoints = Checkpoints(checkpoint_dir, keep_last) if checkpoint_dir else None
        self.save_every = save_every
        self.tuner = tuner
        self._tuner_update = jax.jit(tuner.update) if tuner is not None else None
        self.space = space
        self.advisor = advisor
        self.controller = controller or MetaController()
        self.regime = regime or RegimeDetector()
        self.target = target
        self.target_patience = int(target_patience)
        self.callbacks = list(callbacks)
        if int(max_ensemble_size) < 1:
            raise ValueError(f"Loop: max_ensemble_size must be >= 1, got {max_ensemble_size!r}")
        self.max_ensemble_size = int(max_ensemble_size)
        self._stop = False
        self.callback_errors: list[str] = []

    def stop(self) -> None:
        """Ask the loop to stop after the current window (returns the best state)."""
        self._stop = True

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
                warnings.warn(f"callback failed, training goes on: {msg}", stacklevel=2)

    def _clamp(self, hp: dict[str, Any], state: Any) -> dict[str, Any]:
        known = get_hparams(state)
        out = {}
        for k, v in hp.items():
            if k not in known:
                continue
            try:
                v = float(v)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(v):
                continue
            if self.space is not None and k in self.space:
                if not self.space[k].dynamic:
                    continue
                v = float(self.space[k].clip(np.float32(v)))
            out[k] = v
        return out

    def _apply(self, state, hp, window, source):
        hp = self._clamp(hp, state)
        if hp:
            state = set_hparams(state, hp)
            self._fire("on_hparams_update", window, hp, source)
        return state

    # -- the run -------------------------------------------------------------------------
    def run(self, state: Any, key: jax.Array, max_windows: int) -> LoopResult:
        """Train for up to ``max_windows`` windows; return a :class:`LoopResult`."""
        if int(max_windows) < 1:
            raise ValueError(f"Loop.run: max_windows must be >= 1, got {max_windows!r}")
        self._stop = False
        self.callback_errors = []
        history: list[dict[str, Any]] = []
        best_state, best_score, best_window = state, -math.inf, -1
        rollbacks = spawns = 0
        members: dict[int, tuple[float, Any]] = {}  # window -> (score, state): the ensemble
        start_window = 0
        tstate = None
        if self.checkpoints is not None and self.checkpoints.latest is not None:
            restored = self.checkpoints.restore(state, "latest")
            if restored is not None:
                state, entry = restored
                start_window = entry["window"] + 1
                if "backoff" in entry:
                    self.backoff.load_state_dict(entry["backoff"])
                history = list(entry.get("history", []))
                rollbacks, spawns = entry.get("rollbacks", 0), entry.get("spawns", 0)
                key = jax.random.fold_in(key, start_window)
                best = self.checkpoints.restore(state, "best")
                if best is not None and best[1]["score"] is not None:
                    best_state, best_score = best[0], best[1]["score"]
                    best_window = best[1]["window"]
        if self.tuner is not None:
            key, k_tuner = jax.random.split(key)
            tstate = self.tuner.init(k_tuner, get_hparams(state))
        self._fire("on_loop_start", state)

        reason, error, window = "budget", None, start_window - 1
        on_target = 0

        def save(w, st, score):
            if self.checkpoints is not None:
                self.checkpoints.save(
                    w,
                    st,
                    score,
                    backoff=self.backoff.state_dict(),
                    history=history,
                    rollbacks=rollbacks,
                    spawns=spawns,
                )

        try:
            for window in range(start_window, int(max_windows)):
                key, k = jax.random.split(key)
                state, metrics = self.step(state, k)
                self._fire("on_window_end", window, metrics)
                if self.backoff.due(window):
                    ev = self.evaluate(state)
                    score = float(ev["score"])
                    train = float(ev["train_score"]) if "train_score" in ev else None
                    d = self.backoff.observe(window, score)
                    transition = None if not d.transition else tuple(p.value for p in d.transition)
                    self._fire("on_evaluation", window, dict(ev), transition)
                    history.append(
                        {
                            "window": window,
                            "score": score,
                            "train_score": train,
                            "phase": d.phase.value,
                        }
                    )
                    if math.isfinite(score) and score > best_score:
                        best_state, best_score, best_window = state, score, window
                        save(window, state, score)
                        self._fire("on_improvement", window, score)
                    elif self.save_every and window % self.save_every == 0:
                        save(window, state, score)
                    if d.degraded:
                        self._fire("on_degradation", window, score)
                        if best_window >= 0:
                            state = best_state
                            rollbacks += 1
                            self._fire("on_rollback", window, best_window)
                    if self._tuner_update is not None:
                        obs = Observation(
                            np.float32(score), None if train is None else np.float32(train)
                        )
                        proposal, tstate = self._tuner_update(tstate, obs)
                        if bool(proposal.rollback) and not d.degraded:
                            # before any finite score, best_state is the initial state
                            state = best_state
                            rollbacks += 1
                            self._fire("on_rollback", window, best_window)
                        state = self._apply(
                            state,
                            {k: float(v) for k, v in proposal.hparams.items()},
                            window,
                            "tuner",
                        )
                    if d.transition and d.transition[1] is Phase.COOLING:
                        self._fire("on_plateau", window, score)
                        if self.advisor is not None:
                            state = self._advise(state, history, window)
                    if d.transition and d.transition[1] in (Phase.DORMANT, Phase.WATCHDOG):
                        self._fire("on_dormant", window, score)
                        if d.transition[1] is Phase.DORMANT:
                            action = self.controller.decide(
                                [h["score"] for h in history],
                                [h["train_score"] for h in history]
                                if all(h["train_score"] is not None for h in history)
                                else None,
                                spawns,
                            )
                            if action is Action.SPAWN and best_window >= 0:
                                members[best_window] = (best_score, best_state)
                                key, k_spawn = jax.random.split(key)
                                state = self._spawn(best_state, history, k_spawn, window)
                                spawns += 1
                                self.backoff.reset()
                                self.backoff.best = best_score
                            else:
                                reason = (
                                    "dormant" if action is not Action.STOP else "spawn budget spent"
                                )
                    if self.target is not None and math.isfinite(score) and score >= self.target:
                        on_target += 1
                        if on_target >= self.target_patience:
                            reason = "target"
                    else:
                        on_target = 0
                if self._stop:
                    reason = "stopped"
                if reason != "budget":
                    break
        except Exception as err:  # noqa: BLE001 - the best state is returned, never lost
            reason, error = f"error: {type(err).__name__}: {err}", err
            warnings.warn(
                "Loop: the step or evaluation raised; returning the best state.\n"
                + "".join(traceback.format_exception(err))[-2000:],
                stacklevel=2,
            )
        windows = window + 1
        final = best_state if best_window >= 0 else state
        if self.checkpoints is not None and error is None and best_window >= 0:
            save(windows - 1, state, None)
        scores = [h["score"] for h in history]
        if best_window >= 0:
            members[best_window] = (best_score, best_state)
        kept = sorted(members.items(), key=lambda m: -m[1][0])[: self.max_ensemble_size]
        weights = ensemble_weights(jnp.asarray([m[1][0] for m in kept])) if kept else []
        result = LoopResult(
            state=final,
            reason=reason,
            best_score=best_score,
            best_window=best_window,
            windows=windows,
            evaluations=len(history),
            rollbacks=rollbacks,
            spawns=spawns,
            phase=self.backoff.phase.value,
            regime=self.regime.classify(scores).value,
            hparams={k: float(np.asarray(v).ravel()[0]) for k, v in get_hparams(final).items()},
            history=history,
            error=error,
            callback_errors=list(self.callback_errors),
            ensemble=[
                {"window": w, "score": sc, "weight": float(wt)}
                for (w, (sc, _)), wt in zip(kept, weights)
            ],
            ensemble_states=[st for _, (_, st) in kept],
        )
        self._fire("on_loop_stop", result)
        return result

    def _advise(self, state, history, window):
        context = {
            "window": window,
            "history": [dict(h) for h in history[-20:]],
            "hparams": {k: float(np.asarray(v).ravel()[0]) for k, v in get_hparams(state).items()},
            "space": None
            if self.space is None
            else {n: repr(d) for n, d in self.space.dims.items()},
        }
        try:
            advice = self.advisor.advise(context)
            hp = dict(advice.hparams)
        except Exception as err:  # noqa: BLE001 - a failing advisor must not stop training
            msg = f"advisor: {type(err).__name__}: {err}"
            self.callback_errors.append(msg)
            warnings.warn(f"advisor failed, training goes on: {msg}", stacklevel=2)
            return state
        self._fire("on_advice", window, advice)
        return self._apply(state, hp, window, "advisor")

    def _spawn(self, best_state, history, key, window):
        """Restart from the best state with relative hyperparameter noise."""
        vals = [h["score"] for h in history[-10:]]
        trains = [h["train_score"] for h in history[-10:]]
        slope = float(np.polyfit(np.arange(len(vals)), vals, 1)[0]) if len(vals) > 1 else 0.0
        gap, corr = 0.0, 1.0
        if all(t is not None for t in trains) and len(vals) > 1:
            gap = (trains[-1] - vals[-1]) / max(abs(trains[-1]), 1e-12)
            c = np.corrcoef(trains, vals)[0, 1]
            corr = float(c) if np.isfinite(c) else 0.0
        scale = spawn_noise(slope / max(np.std(vals), 1e-12), gap, corr)
        hp = get_hparams(best_state)
        names = [k for k in hp if self.space is None or (k in self.space and self.space[k].dynamic)]
        if self.space is None:
            names = [k for k in names if k in ("learning_rate",)]
        noise = jax.random.uniform(key, (len(names),), minval=-scale, maxval=scale)
        new = {
            k: float(np.asarray(hp[k]).ravel()[0]) * (1.0 + float(z)) for k, z in zip(names, noise)
        }
        return self._apply(best_state, new, window, "spawn")


def _number(v: Any) -> Any:
    try:
        return float(np.asarray(v).ravel()[0]) if np.size(v) == 1 else None
    except (TypeError, ValueError):
        return None


class RecordRun(Callback):
    """Write a loop's run to a :class:`hagfish_jax.shell.records.RunRecords`.

    Each evaluated window becomes a row of ``trials/<trial>/metrics.csv`` (the
    window's training metrics, every evaluation metric, the backoff phase) as soon as
    it is evaluated; ``events.jsonl`` gets the backoff's state transitions,
    improvements, degradations, rollbacks, advice (with its rationale) and every
    hyperparameter change with its source; the trial's ``summary.json`` is the
    :class:`LoopResult` summary. Metrics are logged as the step and ``evaluate``
    name them; columns are fixed by the first row.
    """

    def __init__(self, records: Any, trial: str = "run") -> None:
        self.records = records
        self.trial = trial
        self._train: dict[str, Any] = {}

    def on_window_end(self, loop, window, metrics):
        self._train = {k: _number(v) for k, v in dict(metrics or {}).items()}

    def on_evaluation(self, loop, window, evaluation, transition):
        row = {"window": int(window), **self._train}
        row.update({k: _number(v) for k, v in evaluation.items()})
        row["phase"] = loop.backoff.phase.value
        self.records.log(self.trial, [row])
        if transition:
            self.records.event(
                "transition", window=int(window), old=transition[0], new=transition[1]
            )

    def on_improvement(self, loop, window, score):
        self.records.event("improvement", window=int(window), score=float(score))

    def on_degradation(self, loop, window, score):
        self.records.event("degradation", window=int(window), score=float(score))

    def on_rollback(self, loop, window, best_window):
        self.records.event("rollback", window=int(window), to_window=int(best_window))

    def on_advice(self, loop, window, advice):
        self.records.event(
            "advice",
            window=int(window),
            hparams=dict(advice.hparams),
            rationale=advice.rationale,
            flags=list(advice.flags),
        )

    def on_hparams_update(self, loop, window, hparams, source):
        self.records.event("hparams", window=int(window), source=source, hparams=dict(hparams))

    def on_loop_stop(self, loop, result):
        self.records.finish_trial(
            self.trial, {"best_val_score": result.best_score, **result.summary()}
        )
