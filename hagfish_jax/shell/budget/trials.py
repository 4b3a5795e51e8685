"""Trials driven by the budget planner: :func:`run_planner`, successive halving, and
trials on the built-in tasks (:class:`TaskTrial`)."""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from ...core._checks import integer
from .planner import AdaptiveTrainer

__all__ = ["TaskTrial", "Trial", "halving_epochs", "run_planner", "task_trials"]


class Trial(Protocol):
    """One training run the planner asked for, trained in pieces.

    ``advance(epochs)`` trains that many more epochs and returns one row per epoch
    (dicts with at least ``window``; see :mod:`hagfish_jax.shell.records` for the columns
    the plots read). ``metric`` is the run's best validation score so far (what the
    planner is told), ``cost`` what it has cost so far, ``summary()`` what to record
    when it stops (for example the test score of its best state).
    """

    metric: float
    cost: float

    def advance(self, epochs: int) -> list[dict[str, Any]]: ...

    def summary(self) -> dict[str, Any]: ...


def halving_epochs(epochs: int, halvings: int, eta: int = 2) -> list[int]:
    """Cumulative epochs at each rung: the last is ``epochs``, each earlier one ``eta``
    times fewer (at least 1).

    >>> halving_epochs(40, 2)
    [10, 20, 40]
    """
    return [max(1, epochs // eta ** (halvings - r)) for r in range(halvings + 1)]


def run_planner(
    trainer: AdaptiveTrainer,
    start_trial: Callable[[dict[str, int]], Trial],
    rounds: int,
    context: Mapping[str, Any] | None = None,
    records: Any = None,
    halving: int = 0,
    eta: int = 2,
    stop_when_done: bool = True,
    fingerprint: Mapping[str, Any] | None = None,
    on_mismatch: str = "error",
) -> dict[str, Any]:
    """Plan, train and observe for up to ``rounds`` rounds; return the outcomes.

    Each round runs one trial (``halving=0``), or a rung of ``eta ** halving`` trials
    (the best budgets by predicted reward) pruned by successive halving: all train
    ``1 / eta ** halving`` of their planned epochs, the better ``1 / eta`` by metric go
    on to ``eta`` times more, and so on; the last survivor completes its plan. Every
    trial is observed with the epochs it actually ran and the cost it actually spent,
    so pruned runs teach the planner too, and ``total_cost`` sums every trial.

    With ``records`` (a :class:`hagfish_jax.shell.records.RunRecords`), each trial's rows go
    to ``trials/trial_NNN/metrics.csv`` as it trains, a ``prune`` event marks each
    pruned trial, and its ``summary.json`` (params, metric, cost, reward, label) is
    written when it stops. Opening the same directory again replays the finished
    rounds into ``trainer`` (same plans, same outcomes) and continues after them; an
    unfinished round is trained again and rows already recorded are not duplicated.

    The records hold what defines the run (``trainer.config()``, ``halving``, ``eta``,
    ``context`` and your ``fingerprint``: the task and its options, say) under
    ``run.json``'s ``"planner"``; a directory holding a run that differs, or trials
    of another kind of run (no ``"planner"`` there), is refused with a ``ValueError``
    before anything is written (``on_mismatch="error"``: it names what differs) or
    cleared (``"replace"``), never replayed into another trainer.

    Stops early once ``trainer.done`` (if ``stop_when_done``).
    """
    rounds = integer("run_planner: rounds", rounds, 1)
    halving = integer("run_planner: halving", halving, 0)
    eta = integer("run_planner: eta", eta, 2)
    if on_mismatch not in ("error", "replace"):
        raise ValueError(
            f"run_planner: on_mismatch must be 'error' or 'replace', got {on_mismatch!r}"
        )
    if "epochs" not in getattr(trainer, "bounds", {"epochs": None}):
        raise ValueError(
            "run_planner: the trainer's bounds need an 'epochs' key (what each trial "
            f"trains for, and what halving cuts); got {sorted(trainer.bounds)}"
        )
    if records is not None:
        _claim(records, trainer, halving, eta, context, fingerprint, on_mismatch)
    finished = {} if records is None else records.summaries()
    outcomes: list[dict[str, Any]] = []
    number = 0
    for _ in range(rounds):
        if stop_when_done and trainer.done:
            break
        plans = trainer.plan_many(eta**halving, context) if halving else [trainer.plan(context)]
        names = [f"trial_{number + i:03d}" for i in range(len(plans))]
        number += len(plans)
        # the round's observations count once against the trainer's patience
        with getattr(trainer, "one_round", contextlib.nullcontext)():
            _round(trainer, start_trial, records, outcomes, finished, names, plans, halving, eta)
    best = max(outcomes, key=lambda o: (o["reward"], -o["cost"]), default=None)
    return {
        "outcomes": outcomes,
        "best": best,
        "total_cost": float(sum(o["cost"] for o in outcomes)),
        "trials": len(outcomes),
    }


def _round(
    trainer, start_trial, records, outcomes, finished, names, plans, halving, eta
) -> None:
    """One round: its trials trained (through the rungs of successive halving) and
    observed, or replayed from the records when it already ran."""
    if all(n in finished for n in names):  # a round that already ran: replay it
        for name in sorted(names, key=lambda n: finished[n]["observed"]):
            s = finished[name]
            trainer.observe(s["metric"], s["cost"], params=s["params"])
            outcomes.append({"trial": name, **s})
        return
    planned = dict(zip(names, plans))
    trials = {n: start_trial(dict(p)) for n, p in planned.items()}
    ran = {n: 0 for n in names}
    alive = list(names)
    for rung in range(halving + 1):
        for n in alive:
            target = halving_epochs(planned[n]["epochs"], halving, eta)[rung]
            if target > ran[n]:
                rows = trials[n].advance(target - ran[n])
                ran[n] = target
                if records is not None:
                    records.log(n, rows)
        if rung < halving:
            ranked = sorted(alive, key=lambda n: -_finite(trials[n].metric))
            keep = ranked[: max(1, len(alive) // eta)]
            for n in alive:
                if n not in keep:
                    _finish(trainer, records, outcomes, n, trials[n], planned[n], ran[n], True)
            alive = keep
    for n in alive:
        _finish(trainer, records, outcomes, n, trials[n], planned[n], ran[n], False)


def _claim(records, trainer, halving, eta, context, fingerprint, on_mismatch) -> None:
    """Record what defines this planner run; refuse (or clear) a directory of another."""
    import json

    config = {
        **trainer.config(),
        "halving": halving,
        "eta": eta,
        "context": dict(context or {}),
        "fingerprint": dict(fingerprint or {}),
    }
    def plain(x):  # NumPy scalars as the numbers they are, anything else as text
        return x.item() if isinstance(x, np.generic) else str(x)

    config = json.loads(json.dumps(config, default=plain))
    old = records.meta.get("planner")
    if old is None and records.trials():  # trials no planner recorded: another kind of run
        if on_mismatch == "error":
            raise ValueError(
                f"run_planner: {records.path} holds another kind of run (trials, and no "
                "'planner' in run.json); use another directory or on_mismatch='replace'"
            )
        records.clear()
    elif old is not None and old != config:
        differ = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if on_mismatch == "error":
            raise ValueError(
                f"run_planner: {records.path} holds another planner run ({', '.join(differ)} "
                "differ); use another directory or on_mismatch='replace'"
            )
        records.clear()
    records.meta["planner"] = config
    records.write_meta()


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _finish(trainer, records, outcomes, name, trial, planned, epochs, pruned):
    params = {**planned, "epochs": int(epochs)}
    label = trainer.observe(trial.metric, trial.cost, params=params)
    summary = {
        "observed": len(trainer.history) - 1,  # replay order on resume
        "params": params,
        "planned": dict(planned),
        "metric": float(trial.metric),
        "cost": float(trial.cost),
        "reward": trainer.reward(trial.metric, trial.cost),
        "label": label,
        "pruned": pruned,
        "best_val_score": float(trial.metric),
        **trial.summary(),
    }
    if records is not None:
        if pruned:
            records.event("prune", trial=name, epochs=int(epochs), metric=float(trial.metric))
        records.finish_trial(name, summary)
    outcomes.append({"trial": name, **summary})


# -- trials on the built-in tasks ------------------------------------------------------


class TaskTrial:
    """A :class:`Trial` on a classification task (see :mod:`hagfish_jax.tasks`): one
    window per epoch, the best-validation state kept, cost = batch size x epochs run.

    Training and evaluation are the task's compiled functions shared by every program
    on it (:func:`hagfish_jax.program.compiled`), so trials of the same task compile
    once.

    Args:
      task: a classification task whose window is one epoch.
      seed: seeds the initial weights and the minibatch order.
      hparams: hyperparameters (default the task's defaults).
      budget: the planned budget, recorded in every row beside the hyperparameters.
    """

    def __init__(
        self,
        task,
        seed: int = 0,
        hparams: dict[str, float] | None = None,
        budget: dict[str, int] | None = None,
    ):
        import jax

        from ...core.program import compiled

        self.task = task
        self.budget = dict(budget or {})
        self.metric = -float("inf")
        self.cost = 0.0
        self.epochs = 0
        init_key, self.key = jax.random.split(jax.random.key(seed))
        self.state = task.init(init_key, {**task.default_hparams, **(hparams or {})})
        self.best_state = self.state
        self._train, self._evaluate = compiled(task)
        self._test = _test_fn(task)

    def advance(self, epochs: int) -> list[dict[str, Any]]:
        import jax

        from ...core.hparams import get_hparams

        rows = []
        for _ in range(int(epochs)):
            self.key, k = jax.random.split(self.key)
            in_force = get_hparams(self.state)
            self.state, _ = self._train(self.state, k, True)
            ev = jax.device_get(self._evaluate(self.state))
            score = float(ev["score"])  # a trial measures what it trained, diverged or not
            self.cost += self.task.batch_size
            if np.isfinite(score) and score > self.metric:
                self.metric, self.best_state = score, self.state
            rows.append(
                {
                    "window": self.epochs,
                    "train_loss": float(ev["train_loss"]),
                    "val_loss": float(ev["val_loss"]),
                    "train_accuracy": float(ev["train_score"]),
                    "val_accuracy": score,
                    "train_f1": float(ev["train_f1"]),
                    "val_f1": float(ev["val_f1"]),
                    **{k: float(in_force[k]) for k in self.task.space.names},
                    **self.budget,
                    "cost": self.cost,
                }
            )
            self.epochs += 1
        return rows

    def summary(self) -> dict[str, Any]:
        """The test accuracy of the best-validation state (measured once, here)."""
        return {"test_score": float(self._test(self.best_state)), "epochs_run": self.epochs}


_TESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _test_fn(task) -> Callable:
    """The task's jitted ``test_accuracy``, made once per task."""
    import jax

    if task not in _TESTS:
        _TESTS[task] = jax.jit(task.test_accuracy)
    return _TESTS[task]


def task_trials(
    build: Callable[[int, int], Any], seed: int = 0, hparams: dict[str, float] | None = None
) -> Callable[[dict[str, int]], TaskTrial]:
    """A ``start_trial`` for :func:`run_planner`: ``build(batch_size, width)`` makes the
    task (once per pair; later trials reuse its compiled functions)."""
    tasks: dict[tuple[int, int], Any] = {}

    def start(params: dict[str, int]) -> TaskTrial:
        shape = (int(params["batch_size"]), int(params.get("width", 32)))
        if shape not in tasks:
            tasks[shape] = build(*shape)
        return TaskTrial(tasks[shape], seed=seed, hparams=hparams, budget=params)

    return start
