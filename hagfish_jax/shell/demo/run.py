"""The runs behind ``hagfish demo``: any task of the registry (or your own
:class:`hagfish_jax.Task`), tuned by PBT over a population or by a guarded single run,
driven by :class:`hagfish_jax.Loop`.

The loop evaluates every window (``Backoff(backoff=1.0)``: a PBT generation needs its
scores), and its phases, rollbacks, prunes and callbacks are the ones users see.
Successive halving masks the worse half of the members at the end of each stage
(:func:`halving_stages`); shapes never change, so the program compiles once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...core import ensemble
from ...core._checks import integer
from ...core.guard import guard
from ...core.program import compiled
from ...core.tuners import finite_difference, pbt
from ...tasks.classification import ClassificationTask
from ..loop import Backoff, Callback, Loop
from .summary import DemoRun, RunSummary

__all__ = ["GUARD_TUNED", "Progress", "halving_stages", "record_names", "run"]

#: What ``--tuner guard`` tunes when the task has them (else every dynamic name).
GUARD_TUNED = ("learning_rate", "dropout_rate", "label_smoothing")

#: ``progress(windows_done, score, hparams)``: ``score`` is the window's best member's
#: (``None`` until the first window has been evaluated; the first call also means
#: "compiled") and ``hparams`` the members' median values.
Progress = Callable[[int, "float | None", "dict[str, float] | None"], None]


def halving_stages(population: int, windows: int, halvings: int) -> list[tuple[int, int]]:
    """``[(members, windows), ...]`` of successive halving: each stage keeps half the
    members of the one before and runs twice as long, with the windows summing to
    ``windows``; ``halvings=0`` is one stage.

    >>> halving_stages(16, 30, 2)
    [(16, 4), (8, 8), (4, 18)]
    """
    if halvings < 0:
        raise ValueError(f"halving: must be >= 0, got {halvings!r}")
    if population // 2**halvings < 2:
        raise ValueError(
            f"halving: {halvings} halvings of {population} members leave fewer than 2; "
            f"at most {max(0, (population // 2).bit_length() - 1)}"
        )
    weights = [2**s for s in range(halvings + 1)]
    if windows < len(weights):
        raise ValueError(
            f"halving: {halvings} halvings need at least {len(weights)} windows, got {windows}"
        )
    lengths = [max(1, int(windows * w / sum(weights))) for w in weights]
    lengths[-1] += windows - sum(lengths)
    return [(population // 2**s, n) for s, n in enumerate(lengths)]


def record_names(task: Any) -> dict[str, str]:
    """In-memory score names -> run-record columns: a task whose score is a validation
    metric (``score_name`` ``"val_accuracy"``) records ``val_accuracy`` and
    ``train_accuracy``; others record ``score`` and ``train_score``."""
    name = getattr(task, "score_name", "score")
    if not name.startswith("val_"):
        return {"score": "score", "train_score": "train_score"}
    return {"score": name, "train_score": "train_" + name[4:]}


class _Collect(Callback):
    """Turns each tuned window's row into record rows and events, writes them to
    ``records`` as they come, drives the progress bar and successive halving."""

    def __init__(self, task, names, records, progress, cuts):
        self.task, self.names, self.records, self.progress = task, names, records, progress
        self.cuts = cuts  # window -> members to prune after it
        self.rows: list[dict] = []
        self.events: list[dict] = []
        self.columns = record_names(task)

    def on_window_end(self, loop, window, metrics):
        if window in self.cuts:
            loop.prune(self.cuts[window])

    def on_row(self, loop, window, row):
        n = loop.population
        new, events = [], []
        skip = {"window", "score", "train_score", "alive", "parent", "rollback", *self.names}
        members = range(n) if n is not None else [None]
        for i in members:
            pick = (lambda v, i=i: np.asarray(v)[i]) if n is not None else np.asarray
            if n is not None and not pick(row["alive"]):
                continue
            out = {"window": int(window)}
            if n is not None:
                out["member"] = i
            out[self.columns["score"]] = float(pick(row["score"]))
            if "train_score" in row:
                out[self.columns["train_score"]] = float(pick(row["train_score"]))
            out.update(
                {
                    k: float(pick(v))
                    for k, v in row.items()
                    if k not in skip and np.ndim(pick(v)) == 0
                }
            )
            out.update({k: float(pick(row[k])) for k in self.names})
            out["cost"] = float(self.task.window_cost)
            if n is not None:
                out["parent"] = int(pick(row["parent"]))
                if out["parent"] != i:
                    events.append(
                        {
                            "kind": "exploit",
                            "window": int(window),
                            "member": i,
                            "parent": out["parent"],
                        }
                    )
            else:
                out["rollback"] = bool(pick(row["rollback"]))
                if out["rollback"]:
                    events.append(
                        {
                            "kind": "rollback",
                            "window": int(window),
                            "score": out[self.columns["score"]],
                        }
                    )
            new.append(out)
        self._keep(new, events)
        if self.progress is not None:
            scores = np.asarray(row["score"], np.float64).reshape(-1)
            finite = scores[np.isfinite(scores)]
            hp = {k: float(np.median(np.asarray(row[k]))) for k in self.names}
            self.progress(window + 1, float(finite.max()) if finite.size else None, hp)

    def on_prune(self, loop, window, members):
        scores = {r["member"]: r[self.columns["score"]] for r in self.rows if r["window"] == window}
        events = [
            {"kind": "prune", "window": int(window), "member": int(m), "score": scores.get(int(m))}
            for m in members
        ]
        self._keep([], events)

    def _keep(self, rows, events):
        self.rows += rows
        self.events += events
        if self.records is not None:
            write_rows(self.records, rows, events)


def write_rows(records: Any, rows: list[dict], events: list[dict]) -> None:
    """Rows go to ``trials/member_XX`` (a population) or ``trials/run``; events as they
    are."""
    by_trial: dict[str, list[dict]] = {}
    for row in rows:
        name = f"member_{row['member']:02d}" if "member" in row else "run"
        by_trial.setdefault(name, []).append({k: v for k, v in row.items() if k != "member"})
    for trial, trial_rows in by_trial.items():
        records.log(trial, trial_rows)
    for event in events:
        records.event(**event)


def run(
    task: Any = "digits",
    tuner: str = "pbt",
    population: int | None = None,
    windows: int = 30,
    seed: int = 0,
    halving: int = 0,
    fraction: float = 0.25,
    tuned: Sequence[str] = GUARD_TUNED,
    progress: Progress | None = None,
    records: Any = None,
    checkpoint_dir: str | None = None,
    stop_on_interrupt: bool = False,
    **options: Any,
) -> DemoRun:
    """Tune ``task`` (a registry name or a :class:`hagfish_jax.Task`) through the Loop.

    Args:
      task: ``"digits"``, ``"breast_cancer"``, ``"cartpole"`` or your own task.
      tuner: ``"pbt"`` (a population; members start from values drawn from the space)
        or ``"guard"`` (one run from the task's defaults, guarded finite differences
        over ``tuned``).
      population: members for ``"pbt"`` (an integer >= 2; default: the registry's,
        else 16); ``"guard"`` tunes one model and ignores it.
      windows: training windows (a PBT generation is one window).
      seed: seeds the task's data split, the members and the tuner.
      halving: successive halving stages for ``"pbt"`` (see :func:`halving_stages`).
      fraction: PBT's truncation fraction.
      tuned: the names ``"guard"`` tunes (those the task has).
      progress: called after each window (see :data:`Progress`).
      records: a :class:`~hagfish_jax.shell.records.RunRecords` written as rows come.
      checkpoint_dir: the Loop's checkpoints (resumable).
      stop_on_interrupt: a first Ctrl-C (SIGINT, in the main thread) stops the run
        after the window in training, which is then summarised as usual (its
        ``reason`` is ``"stopped"``); a second one interrupts at once.
      **options: the registry task's build options (``model``, ``hidden``,
        ``steps_per_window``, ``batch_size``, ``data``); a task object is built
        already, and takes none.

    Returns:
      A :class:`DemoRun`.
    """
    from ... import tasks as registry

    if tuner not in ("pbt", "guard"):
        raise ValueError(f"run: tuner must be 'pbt' or 'guard', got {tuner!r}")
    windows = integer("run: windows", windows, 1)
    seed = integer("run: seed", seed, 0)
    halving = integer("run: halving", halving, 0)
    if population is not None and tuner == "pbt":
        population = integer("run: population", population, 2)
    start = time.perf_counter()
    model = options.get("model")
    if isinstance(task, str):
        entry = registry.REGISTRY.get(task)
        if entry is None:
            raise ValueError(f"unknown task {task!r}; accepted: {sorted(registry.REGISTRY)}")
        default_population = entry.population
        task = registry.make(task, seed=seed, **options)
    else:
        if options:
            raise ValueError(
                f"run: {sorted(options)} build a registry task; a task object is built "
                "already"
            )
        default_population = 16
    space = task.space
    key_hp, key_run = jax.random.split(jax.random.key(seed))
    if tuner == "pbt":
        n = population or default_population
        stages = halving_stages(n, int(windows), halving)
        the_tuner, hparams, label = pbt(space, fraction=fraction), space.sample(key_hp, n), "pbt"
    else:
        if halving:
            raise ValueError("run: successive halving needs a population (tuner='pbt')")
        n, stages = None, []
        names = [k for k in tuned if k in space.dynamic] or sorted(space.dynamic)
        the_tuner = guard(finite_difference(space.subspace(names)), space=space)
        hparams, label = dict(task.default_hparams), "guard(finite_difference)"
    cuts, done = {}, 0
    for (members, length), nxt in zip(stages, stages[1:]):
        done += length
        cuts[done - 1] = members - nxt[0]
    collect = _Collect(task, space.names, records, progress, cuts)
    loop = Loop(
        task=task,
        tuner=the_tuner,
        population=n,
        callbacks=[collect],
        backoff=Backoff(backoff=1.0, plateau=5, dormant=max(20, int(windows))),
        checkpoint_dir=checkpoint_dir,
    )
    with _stops_on_interrupt(loop) if stop_on_interrupt else contextlib.nullcontext():
        result = loop.run(None, key_run, int(windows), hparams=hparams)
    summary = _summarise(
        task, label, model, n, int(windows), seed, halving, stages, loop, result, collect
    )
    summary.wall_time_s = round(time.perf_counter() - start, 3)
    meta = {
        "task": task.name,
        "tuner": label,
        "hparams": list(space.names),
        "score": record_names(task)["score"],
    }
    return DemoRun(summary, collect.rows, collect.events, meta, result)


@contextlib.contextmanager
def _stops_on_interrupt(loop: Loop) -> Iterator[None]:
    """A first SIGINT asks ``loop`` to stop after its window; the next one raises
    ``KeyboardInterrupt`` as usual. Only in the main thread (where Python delivers
    signals); elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)

    def first(signum, frame):
        loop.stop()
        signal.signal(signal.SIGINT, before)  # a second Ctrl-C interrupts at once
        print(
            "\nstopping after this window (Ctrl-C again to abort); the run is summarised "
            "and written",
            file=sys.stderr,
            flush=True,
        )

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _summarise(task, label, model, n, windows, seed, halving, stages, loop, result, collect):
    carry = result.carry
    rows = collect.rows
    score_col = record_names(task)["score"]
    best_hp = {k: float(v) for k, v in jax.device_get(carry.best.hparams).items()}
    summary = RunSummary(
        task=task.name,
        tuner=label,
        model=model,
        score_name=task.score_name,
        population=n,
        windows=result.windows,
        seed=seed,
        best_window=result.best_window,
        best_member=result.best_member,
        best_score=result.best_score,
        best_hparams=best_hp,
        final_score=result.history[-1]["score"] if result.history else None,
        exploits=sum(e["kind"] == "exploit" for e in collect.events),
        rollbacks=result.rollbacks,
        prunes=sum(e["kind"] == "prune" for e in collect.events),
        spawns=result.spawns,
        halving=halving,
        stages=[list(s) for s in stages],
        total_cost=float(sum(r["cost"] for r in rows)),
        reason=result.reason,
        jax_version=jax.__version__,
        backend=jax.default_backend(),
    )
    if n is not None:
        summary.final_members = np.flatnonzero(np.asarray(carry.alive)).tolist()
    summary.cost_unit = task.cost_unit
    if isinstance(task, ClassificationTask):
        summary.steps_per_window, summary.batch_size = task.steps_per_window, task.batch_size
        summary.total_steps = len(rows) * task.steps_per_window
        if n is not None:
            _ensemble(task, loop, carry, summary)
    if task.target is not None:
        summary.target = task.target
        hits = [r["window"] for r in rows if r[score_col] >= task.target]
        summary.first_window_at_target = min(hits) if hits else None
    if task.test is not None and result.best_window >= 0:
        summary.test_score = float(jax.jit(task.test)(result.state)["score"])
    return summary


def _ensemble(task, loop, carry, summary: RunSummary) -> None:
    """The score-weighted ensemble of the final alive members (as they stand now, after
    the last exploit), on validation and test data."""
    _, evaluate = compiled(task, loop.population)
    now = evaluate(carry.state)["score"]
    weights = ensemble.weights(now, carry.alive)

    @jax.jit
    def accuracy(params, w, x, y):
        probs = ensemble.predict(task.predict, params, x, w)
        return jnp.mean(jnp.argmax(probs, -1) == y)

    params = carry.state.params
    data = task.data
    summary.ensemble_val_score = float(accuracy(params, weights, data.x_val, data.y_val))
    summary.ensemble_test_score = float(accuracy(params, weights, data.x_test, data.y_test))
    summary.ensemble_weights = [round(float(w), 4) for w in weights]
