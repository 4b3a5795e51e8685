"""Shared pieces of the population benchmarks (``population*.py``): measuring, model
selection, the digits setups, and the two non-Optuna runners.

* :class:`Measure`: wall time and XLA compilations (count, seconds) of a ``with`` block;
* :class:`Selection`: the validation-selected model of a run and its anytime curve;
* :class:`Setup` and :func:`make_task`: a digits configuration and its task;
* :func:`run_population`: a vmapped population through ``hj.program`` (the library's
  one tuned window), all windows in one jitted ``lax.scan``;
* :func:`run_sequential`: the members one after another, one compiled scan each.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import hagfish_jax as hj
from hagfish_jax.tasks import digits

HERE = Path(__file__).resolve().parent

# -- measuring ---------------------------------------------------------------------------

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = {"count": 0, "seconds": 0.0, "installed": False}


def install_compile_counter() -> None:
    """Count every XLA compilation in this process (idempotent)."""
    if _compiles["installed"]:
        return

    def listener(event: str, duration: float, **_: Any) -> None:
        if event == _COMPILE_EVENT:
            _compiles["count"] += 1
            _compiles["seconds"] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    _compiles["installed"] = True


#: The metrics every method's jitted program returns per evaluation: what selection
#: (score, ties to val_loss) and the report (test) read. Returning only these lets XLA
#: drop the rest of the task's evaluation (the training-set metrics) for every method.
READ = ("score", "test", "val_loss")


class Measure:
    """Wall time and XLA compilations (count and seconds) of a ``with`` block."""

    def __enter__(self) -> Measure:
        install_compile_counter()
        self._c0, self._s0 = _compiles["count"], _compiles["seconds"]
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.compiles = _compiles["count"] - self._c0
        self.compile_s = _compiles["seconds"] - self._s0


class Selection:
    """The validation-selected model of a run, and its anytime curve.

    ``add(steps, val, test, loss)`` is called after every evaluation, in the order the
    compute was spent. The rule is the library's (``hj.program``'s ``carry.best``): a
    better finite validation score replaces the selected model, and so does an equal
    one with a lower validation loss (on a small validation set many models tie on
    accuracy). ``curve`` holds ``(steps spent, test accuracy of the selected model)``.
    """

    def __init__(self) -> None:
        self.val = -math.inf
        self.loss = math.inf
        self.test = math.nan
        self.steps = 0
        self.curve: list[tuple[int, float]] = []

    def add(self, steps: int, val: float, test: float, loss: float = math.inf) -> None:
        self.steps = int(steps)
        val, loss = float(val), float(loss) if math.isfinite(loss) else math.inf
        if math.isfinite(val) and (val > self.val or (val == self.val and loss < self.loss)):
            self.val, self.loss, self.test = val, loss, float(test)
        self.curve.append((self.steps, self.test))


class Result(NamedTuple):
    test: float  # test accuracy of the validation-selected model
    val: float
    steps: int  # optimizer steps run (all members / trials)
    wall: float
    compiles: int
    compile_s: float
    curve: list  # [(steps, test of the selected model)]
    trials: int  # trials started (Optuna) or members
    warm: float = math.nan  # the same work again with the compiled programs (throughput)


# -- digits building blocks ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
    """A digits configuration: data, model and the equal budget of one method."""

    name: str
    model: str = "mlp"
    train_fraction: float = 1.0
    batch_size: int = 64
    steps_per_window: int | None = None  # None: one epoch
    hidden: tuple[int, ...] = (64,)
    members: int = 16
    windows: int = 20


def make_task(setup: Setup, seed: int) -> digits.DigitsTask:
    """The digits task of ``setup`` on split ``seed``; ``evaluate`` also returns ``test``.

    The test accuracy rides along so the anytime curves need no second pass; it is
    never used for selection or by a tuner.
    """
    data = digits.load_digits_split(seed, train_fraction=setup.train_fraction)
    task = digits.make_task(
        data,
        model=setup.model,
        batch_size=setup.batch_size,
        steps_per_window=setup.steps_per_window,
        hidden=setup.hidden,
    )
    evaluate = task.evaluate

    def evaluate_with_test(state):
        return {**evaluate(state), "test": task.test_accuracy(state)}

    return task.replace(evaluate=evaluate_with_test)


def sampled_hparams(space: hj.Space, seed: int, n: int) -> list[dict[str, float]]:
    """``n`` hyperparameter sets drawn from ``space`` as Python floats."""
    hp = jax.device_get(space.sample(jax.random.key(seed), n))
    return [{k: float(v[i]) for k, v in hp.items()} for i in range(n)]


# -- runners ---------------------------------------------------------------------------------


def run_population(
    task: digits.DigitsTask,
    setup: Setup,
    seed: int,
    tuner: hj.Tuner,
    hparams: Callable[[jax.Array, int], dict] | dict | None = None,
    members: int | None = None,
    warm: bool = False,
    shared_key: bool = False,
) -> Result:
    """A vmapped population (``hj.program.build(task, tuner, population=n)``), all
    windows in one jitted scan.

    ``hparams(key, n)`` gives the initial ``(n,)`` hyperparameters (default: sampled
    from the task's space), or ``hparams`` is a dict of ``(n,)`` arrays, passed to the
    jitted start as an argument (new values, same program); the selected model is the
    best member at any window. ``shared_key``: the members train with one key per
    window (``hj.program.build(..., shared_key=True)``).
    """
    n = members or setup.members
    windows, spw = setup.windows, task.steps_per_window
    given = hparams if isinstance(hparams, dict) else None
    hparams = hparams or (lambda key, n: task.space.sample(key, n))
    sel = Selection()
    with Measure() as m:
        program = hj.program.build(
            task, tuner, population=n, windows=windows, shared_key=shared_key
        )

        @jax.jit
        def run(seed, values=None):  # one program: start and all windows, like (b)'s
            k_hp, k_run = jax.random.split(jax.random.key(seed))
            carry = program.init(k_run, hparams(k_hp, n) if values is None else values)
            carry, rows = hj.program.scan(program, carry, windows)
            # the rows read below, as (b) returns only those: metrics no one reads
            # (the training set's) are not computed
            return carry, {k: rows[k] for k in READ}

        carry, rows = run(seed, given)
        rows = jax.device_get(rows)
        for g in range(windows):
            score = np.where(np.isfinite(rows["score"][g]), rows["score"][g], -np.inf)
            loss = np.where(np.isfinite(rows["val_loss"][g]), rows["val_loss"][g], np.inf)
            tied = np.flatnonzero(score == score.max())
            i = int(tied[np.argmin(loss[tied])])  # ties to the lower validation loss
            sel.add((g + 1) * n * spw, rows["score"][g, i], rows["test"][g, i], loss[i])
        best = jax.device_get((carry.best.score, carry.best.loss))
    # the program's own on-device best member agrees with the host-side selection
    assert (best[0], best[1]) == (np.float32(sel.val), np.float32(sel.loss)), (best, sel.val)
    warm_s = math.nan
    if warm:
        t0 = time.perf_counter()
        jax.device_get(run(seed, given)[1]["score"])
        warm_s = time.perf_counter() - t0
    return Result(
        sel.test, sel.val, n * windows * spw, m.wall, m.compiles, m.compile_s, sel.curve, n, warm_s
    )


def run_sequential(
    task: digits.DigitsTask,
    setup: Setup,
    seed: int,
    hp_list: Sequence[dict[str, float]],
    warm: bool = False,
) -> Result:
    """The members one after another: one compiled ``lax.scan`` program, one call each
    (untuned: each member keeps its hyperparameters). ``warm``: run the 32 members again
    with the compiled program and report that time too (``Result.warm``), as
    :func:`run_population` does."""
    windows, spw = setup.windows, task.steps_per_window
    sel = Selection()
    with Measure() as m:

        @jax.jit
        def member_run(i, hp):
            key = jax.random.fold_in(jax.random.key(seed), i)
            k_init, k_run = jax.random.split(key)

            def body(state, k):
                state, _ = task.train_window(state, k)
                metrics = task.evaluate(state)
                return state, (metrics["score"], metrics["test"], metrics["val_loss"])

            state = task.init(k_init, hp)
            return jax.lax.scan(body, state, jax.random.split(k_run, windows))[1]

        hps = [{k: np.float32(v) for k, v in hp.items()} for hp in hp_list]
        used = 0
        for i, hp in enumerate(hps):
            scores, tests, losses = jax.device_get(member_run(i, hp))
            for w in range(windows):
                used += spw
                sel.add(used, scores[w], tests[w], losses[w])
    warm_s = math.nan
    if warm:  # again, compiled: the run time alone
        t0 = time.perf_counter()
        for i, hp in enumerate(hps):
            jax.device_get(member_run(i, hp))
        warm_s = time.perf_counter() - t0
    return Result(
        sel.test, sel.val, used, m.wall, m.compiles, m.compile_s, sel.curve, len(hp_list), warm_s
    )


# -- printing ------------------------------------------------------------------------------


def med_range(xs: Sequence[float], fmt: str = "{:.4f}") -> str:
    """``median [min-max]`` of ``xs``."""
    xs = list(xs)
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]"


def ok(flag: bool) -> str:
    return "ok" if flag else "MISSED"
