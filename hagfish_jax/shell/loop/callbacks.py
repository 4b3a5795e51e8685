"""Loop callbacks, advice, and a callback that writes run records."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..advisors.context import Advice  # one Advice for the Loop and the advisors

__all__ = ["Advice", "Callback", "RecordRun", "overrides"]


class Callback:
    """Override any of these; each receives the loop first. Exceptions are caught,
    reported in ``LoopResult.callback_errors`` and training goes on.

    ``on_row`` receives the tuned window's row as numpy arrays (scores, metrics, the
    hyperparameters in force during the window, and for a population each member's
    parent and alive flag); it is fetched from the device only when some callback
    overrides it.
    """

    def on_loop_start(self, loop, state): ...
    def on_window_end(self, loop, window, metrics): ...
    def on_evaluation(self, loop, window, evaluation, transition): ...
    def on_row(self, loop, window, row): ...
    def on_improvement(self, loop, window, score): ...
    def on_plateau(self, loop, window, score): ...
    def on_dormant(self, loop, window, score): ...
    def on_degradation(self, loop, window, score): ...
    def on_rollback(self, loop, window, best_window): ...
    def on_hparams_update(self, loop, window, hparams, source): ...
    def on_advice(self, loop, window, advice): ...
    def on_prune(self, loop, window, members): ...
    def on_spawn(self, loop, window, parents): ...
    def on_loop_stop(self, loop, result): ...


def overrides(callback: Any, name: str) -> bool:
    """Whether ``callback`` does something in ``name`` (not the base class's no-op)."""
    fn = getattr(type(callback), name, None)
    return fn is not None and fn is not getattr(Callback, name, None)


def _number(v: Any) -> Any:
    try:
        return float(np.asarray(v).ravel()[0]) if np.size(v) == 1 else None
    except (TypeError, ValueError):
        return None


def _member(v: Any, i: int) -> Any:
    a = np.asarray(v)
    return _number(a[i]) if a.ndim >= 1 and a.shape[0] > i else _number(a)


class RecordRun(Callback):
    """Write a loop's run to a :class:`hagfish_jax.shell.records.RunRecords`.

    Each evaluated window becomes a row of ``trials/<trial>/metrics.csv`` (the
    window's training metrics, every evaluation metric, the hyperparameters it trained
    with, the backoff phase) as soon as it is tuned; for a population, one row per
    member in ``trials/<trial>_<member>/``. ``events.jsonl`` gets the backoff's state
    transitions, improvements, degradations, rollbacks, PBT exploits (``member``
    copied ``parent``), advice (with its rationale), prunes, spawns and every
    hyperparameter change with its source; ``run.json`` lists the tuned names under
    ``"hparams"`` (what :mod:`hagfish_jax.plots` draws); the trial's ``summary.json``
    is the :class:`LoopResult` summary. Metrics are logged as the step and
    ``evaluate`` name them; columns are fixed by the first row.
    """

    def __init__(self, records: Any, trial: str = "run") -> None:
        self.records = records
        self.trial = trial
        self._train: dict[str, Any] = {}

    def on_loop_start(self, loop, state):
        names = loop.program.names
        if names and "hparams" not in self.records.meta:
            self.records.meta["hparams"] = list(names)
            self.records.write_meta()

    def on_window_end(self, loop, window, metrics):
        self._train = dict(metrics or {})

    def on_evaluation(self, loop, window, evaluation, transition):
        if transition:
            self.records.event(
                "transition", window=int(window), old=transition[0], new=transition[1]
            )

    def on_row(self, loop, window, row):
        n = loop.population
        phase = loop.backoff.phase.value
        names = [k for k in (loop.program.names or ()) if k in row]
        skip = ("window", "parent", "alive")
        shown = {k: v for k, v in row.items() if not k.startswith("window_") and k not in skip}
        if n is None:
            out = {"window": int(window), **{k: _number(v) for k, v in self._train.items()}}
            out.update({k: _number(v) for k, v in shown.items()})
            out["phase"] = phase
            self.records.log(self.trial, [out])
            return
        for i in range(n):
            out = {"window": int(window)}
            out.update({k: _member(v, i) for k, v in self._train.items()})
            out.update({k: _member(v, i) for k, v in shown.items()})
            out["phase"] = phase
            self.records.log(f"{self.trial}_{i:02d}", [out])
        parents = np.asarray(row["parent"]).reshape(-1)
        for i, parent in enumerate(parents.tolist()):
            if parent != i:  # member i carries a copy of parent from the next window on
                self.records.event(
                    "exploit",
                    window=int(window),
                    member=i,
                    parent=int(parent),
                    hparams={k: _member(row[k], int(parent)) for k in names},
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

    def on_prune(self, loop, window, members):
        self.records.event("prune", window=int(window), members=[int(m) for m in members])

    def on_spawn(self, loop, window, parents):
        self.records.event("spawn", window=int(window), parents=[int(p) for p in parents])

    def on_hparams_update(self, loop, window, hparams, source):
        hp = {
            k: _number(v) if np.size(v) == 1 else np.asarray(v).tolist() for k, v in hparams.items()
        }
        self.records.event("hparams", window=int(window), source=source, hparams=hp)

    def on_loop_stop(self, loop, result):
        self.records.finish_trial(
            self.trial, {"best_val_score": result.best_score, **result.summary()}
        )
