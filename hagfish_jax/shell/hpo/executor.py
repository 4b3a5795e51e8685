"""The executor: one trial of whole-run training, with the out-of-memory step-down.

:class:`Executor` trains a task built for the trial's batch size with the trial's
hyperparameters for up to ``epochs`` epochs (stopping after ``patience`` epochs
without a new best), records one row per epoch, keeps the best epoch's state (the
highest validation accuracy, ties to the lower validation loss) and tests it on the
held-out split, which is never the validation split.

Out of memory: when a trial fails with XLA's ``RESOURCE_EXHAUSTED`` (or a
``MemoryError``, or any error the ``retryable`` predicate accepts), the trial starts
again with the next smaller batch size of the space, down to the smallest; the summary
says so under ``oom_adjusted``. If the smallest fails too, :class:`TrialFailed` is
raised, carrying the attempts, and the rounds go on without the trial.

Each batch size is built and compiled once per executor: hyperparameters travel in
the training state (``hj.set_hparams``), so trials that differ only in them reuse the
compiled functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from ...core.dimensions import Choice
from ...core.space import Space

__all__ = ["Executor", "TrialFailed", "TrialResult", "is_oom"]


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory failure: a ``MemoryError``, or an error
    whose text carries XLA's ``RESOURCE_EXHAUSTED`` status or says "out of memory"."""
    if isinstance(err, MemoryError):
        return True
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


class TrialFailed(RuntimeError):
    """A trial that failed for good; ``attempts`` lists each batch size and error."""

    def __init__(self, message: str, attempts: list[dict[str, Any]]):
        super().__init__(message)
        self.attempts = attempts


class TrialResult(NamedTuple):
    """One trial: its per-epoch rows, its summary and the best epoch's state."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    state: Any


def _loss(x: Any) -> float:
    """A loss as a float, non-finite kept: NaN or infinity in a row is the record of a
    divergence (what the advisors' diagnosis reads as one), not a missing value."""
    return float(np.asarray(x).reshape(()))


def _f(x: Any) -> float | None:
    v = _loss(x)
    return v if math.isfinite(v) else None


class Executor:
    """Trains trials of a task family; see the module docstring.

    Args:
      build: ``batch_size -> task`` (a :class:`~hagfish_jax.tasks.classification.
        ClassificationTask` or anything with ``init``, ``train_window`` (one epoch),
        ``evaluate`` (``score``, ``val_loss``, ``val_f1``, ``train_score``,
        ``train_loss``, ``train_f1``) and ``test`` (``score``, ``loss``, ``f1``)).
      space: the trial space; its ``batch_size`` (a numeric :class:`Choice`) gives the
        step-down sizes. Non-numeric choices (``optimizer``) reach the task as their
        index.
      epochs: the most epochs a trial trains.
      patience: stop after this many epochs without a new best.
      retryable: errors that also step the batch size down (besides out of memory).
    """

    def __init__(
        self,
        build: Callable[[int], Any],
        space: Space,
        epochs: int,
        patience: int,
        retryable: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self.build = build
        self.space = space
        self.epochs = int(epochs)
        self.patience = int(patience)
        self.retryable = retryable
        self._compiled: dict[int, tuple] = {}

    def _functions(self, batch_size: int) -> tuple:
        if batch_size not in self._compiled:
            task = self.build(batch_size)
            self._compiled[batch_size] = (
                task,
                jax.jit(task.train_window),
                jax.jit(task.evaluate),
                jax.jit(task.test),
            )
        return self._compiled[batch_size]

    def _device_hparams(self, task: Any, hparams: Mapping[str, Any]) -> dict[str, float]:
        """The values the task's state carries: numbers, a non-numeric choice as its
        index; names the task does not know (``batch_size``) are left out."""
        known = set(task.default_hparams)
        out = {}
        for name, value in hparams.items():
            if name not in known:
                continue
            dim = self.space.dims.get(name)
            if isinstance(dim, Choice) and not dim.numeric:
                value = dim.values.index(value)
            out[name] = float(value)
        return out

    def _sizes(self, requested: int) -> list[int]:
        dim = self.space.dims.get("batch_size")
        if not isinstance(dim, Choice):
            return [requested]
        smaller = sorted((int(v) for v in dim.values if int(v) < requested), reverse=True)
        return [requested, *smaller]

    def run(self, hparams: Mapping[str, Any], key: jax.Array) -> TrialResult:
        """Train one trial (stepping the batch size down on out of memory).

        Raises:
          TrialFailed: every batch size failed with a retryable error, or the trial
            failed with another error (then after one attempt).
        """
        requested = int(hparams.get("batch_size", 0)) or None
        sizes = self._sizes(requested) if requested else [0]
        attempts: list[dict[str, Any]] = []
        for size in sizes:
            try:
                result = self._train(dict(hparams), size, key)
            except Exception as err:  # noqa: BLE001 - recorded, then stepped down or failed
                attempts.append({"batch_size": size, "error": f"{type(err).__name__}: {err}"[:500]})
                retry = is_oom(err) or (self.retryable is not None and self.retryable(err))
                if not retry:
                    raise TrialFailed(f"trial failed: {attempts[-1]['error']}", attempts) from err
                continue
            oom = None
            if attempts:
                oom = {"requested_batch_size": requested, "batch_size": size, "attempts": attempts}
            result.summary["oom_adjusted"] = oom
            return result
        raise TrialFailed(
            f"trial failed at every batch size {sizes}: {attempts[-1]['error']}", attempts
        )

    def _train(self, hparams: dict[str, Any], batch_size: int, key: jax.Array) -> TrialResult:
        task, train, evaluate, test = self._functions(batch_size)
        if batch_size:
            hparams["batch_size"] = batch_size
        start = time.perf_counter()
        hp = {**task.default_hparams, **self._device_hparams(task, hparams)}
        k_init, key = jax.random.split(key)
        state = task.init(k_init, hp)
        rows: list[dict[str, Any]] = []
        best = (-math.inf, -math.inf)  # (val accuracy, -val loss)
        best_state, best_epoch, since = state, -1, 0
        cost = float(getattr(task, "window_cost", 1.0) or 1.0)
        for epoch in range(self.epochs):
            key, k = jax.random.split(key)
            state, metrics = train(state, k)
            ev = jax.device_get(evaluate(state))
            row = {
                "window": epoch,
                "epoch": epoch,
                "train_loss": _loss(ev["train_loss"]),
                "val_loss": _loss(ev["val_loss"]),
                "train_accuracy": _f(ev["train_score"]),
                "val_accuracy": _f(ev["score"]),
                "train_f1": _f(ev["train_f1"]),
                "val_f1": _f(ev["val_f1"]),
                "learning_rate": float(hp.get("learning_rate", math.nan)),
                "cost": cost * (epoch + 1),
            }
            rows.append(row)
            if not (math.isfinite(row["val_loss"]) and math.isfinite(row["train_loss"])):
                break  # diverged: nothing later can be better, the best epoch stays
            rank = (row["val_accuracy"] or 0.0, -row["val_loss"])
            if rank > best:
                best, best_state, best_epoch, since = rank, state, epoch, 0
            else:
                since += 1
                if since >= self.patience:
                    break
        tested = jax.device_get(test(best_state)) if best_epoch >= 0 else None
        best_row = rows[best_epoch] if best_epoch >= 0 else {}
        summary = {
            "status": "finished",
            "best_val_accuracy": best_row.get("val_accuracy"),
            "best_val_loss": best_row.get("val_loss"),
            "best_val_f1": best_row.get("val_f1"),
            "best_epoch": best_epoch,
            "epochs": len(rows),
            "test_accuracy": None if tested is None else _f(tested["score"]),
            "test_loss": None if tested is None else _f(tested["loss"]),
            "test_f1": None if tested is None else _f(tested["f1"]),
            "effective_hparams": dict(hparams),
            "val_and_test_same_dataset": False,
            "wall_s": round(time.perf_counter() - start, 3),
        }
        return TrialResult(rows, summary, best_state)


def batch_choices(space: Space, n_train: int) -> Sequence[int]:
    """The batch sizes of ``space`` a train split of ``n_train`` examples allows."""
    dim = space.dims.get("batch_size")
    if not isinstance(dim, Choice):
        return ()
    return tuple(int(v) for v in dim.values if int(v) <= n_train)
