"""Held-out tasks, one per modality, and a side-by-side evaluation of tuners on them.

``hagfish controller eval`` and ``benchmarks/controller.py`` use these:

* ``"image"``: the digits CNN (conv -> pool -> conv -> pool -> dense -> output) on
  the full ten classes;
* ``"text"``: the bag-of-embeddings classifier on the standard-library docstrings
  (:mod:`hagfish_jax.tasks.text`);
* ``"tabular"``: dense -> dense -> output on breast cancer; ``"wine"`` likewise on
  wine;
* ``"digits"`` (the MLP on the pixels) and ``"synthetic"`` (a generated task).

:func:`evaluate_tuner` trains ``seeds`` runs of a task as one vmapped program (a
population whose members do not exchange anything), each tuned by its own copy of
the tuner, and reports what reference 003 asks for: test accuracy and F1 of the
final model, final validation loss, windows until the validation loss plateaued, the
spread of the hyperparameter trajectories across seeds, and the wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import program as program_lib
from . import EVAL_TASKS
from .data import synthetic_split, wine_split
from .tasks import make_task

__all__ = ["EVAL_TASKS", "evaluate_tuner", "eval_task", "plateau_window"]


def eval_task(name: str, seed: int = 0, steps_per_window: int = 10, **options: Any):
    """The held-out task ``name`` (one of :data:`EVAL_TASKS`) on the split of ``seed``."""
    if name not in EVAL_TASKS:
        raise ValueError(f"eval_task: unknown task {name!r}; known: {EVAL_TASKS}")
    kw = dict(steps_per_window=steps_per_window, name=name, **options)
    if name in ("image", "digits"):
        from ..tasks.digits import load_digits_split

        return make_task(load_digits_split(seed), "cnn" if name == "image" else "mlp", **kw)
    if name == "text":
        from ..tasks.text import load_docstrings_split

        return make_task(load_docstrings_split(seed, vocab_size=1000), "text", **kw)
    if name == "tabular":
        from ..tasks.breast_cancer import load_breast_cancer_split

        return make_task(load_breast_cancer_split(seed), **kw)
    if name == "wine":
        return make_task(wine_split(seed), **kw)
    return make_task(synthetic_split(10_000 + seed, n_features=20, n_classes=4), **kw)


def plateau_window(losses: np.ndarray, tolerance: float = 0.01) -> int:
    """The first window after which the validation loss never again fell by more
    than ``tolerance`` of its starting value below the best so far (1-based)."""
    losses = np.asarray(losses, np.float64)
    losses = np.where(np.isfinite(losses), losses, np.inf)
    scale = abs(losses[0]) if np.isfinite(losses[0]) and losses[0] != 0 else 1.0
    best = np.minimum.accumulate(losses)
    gains = np.flatnonzero(best[:-1] - best[1:] > tolerance * scale)
    return int(gains[-1] + 2) if len(gains) else 1


def evaluate_tuner(
    task,
    tuner,
    windows: int,
    members: int = 4,
    keys: Sequence[int] = (0,),
    hparams: Callable[[jax.Array], Mapping[str, Any]] | None = None,
) -> list[dict]:
    """Train ``members`` runs of ``task`` for ``windows`` windows under ``tuner``, once
    per key in ``keys`` (one compile for all of them).

    ``tuner`` is a single-run tuner (each member gets its own copy) or a population
    tuner (``pbt``: it ranks the members). ``hparams(key)`` gives the members'
    starting values (``(members,)`` arrays; default the task's defaults for all).

    Returns one dict per key with per-member arrays (``val_score``, ``test_accuracy``,
    ``test_f1``, ``final_val_loss``, ``plateau``), the index ``selected`` of the member
    with the best final validation accuracy (ties: lower validation loss); a member's
    test numbers are those of the model its last validation score measured (before
    that window's tune step copies members or writes new hyperparameters),
    ``trajectory_std`` (per hyperparameter, the mean over windows of the standard
    deviation across members of its unit-cube value), ``hparams`` (trajectories,
    ``{name: (windows, members)}``) and ``seconds`` (the first key's includes the
    compile).
    """
    if int(windows) != windows or windows < 1:
        raise ValueError(f"evaluate_tuner: windows must be an integer >= 1, got {windows!r}")
    prog = program_lib.build(task, tuner, members, windows=windows)

    @jax.jit
    def run(key, start):
        carry = prog.init(key, start)
        carry, rows = jax.lax.scan(prog.window, carry, None, length=windows - 1)
        # the last window by hand: the test reads the state its row scored, before the
        # tune step replaces members (PBT) or writes the next proposal (structure too)
        carry, metrics = prog.train(carry)
        evaluation = prog.evaluate(carry)
        final = jax.vmap(task.test)(carry.state)
        _, last = prog.tune(carry, metrics, evaluation)
        rows = jax.tree.map(lambda r, x: jnp.concatenate([r, x[None]]), rows, last)
        return rows, final

    names = task.space.names
    out = []
    for k in keys:
        key = jax.random.key(k)
        start = dict(task.default_hparams)
        if hparams is not None:
            start.update(hparams(jax.random.fold_in(key, 1)))
        start = {
            n: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (members,)) for n, v in start.items()
        }
        t0 = time.perf_counter()
        rows, final = jax.block_until_ready(run(key, start))
        seconds = time.perf_counter() - t0
        unit = np.asarray(task.space.to_unit({n: rows[n] for n in names}))  # (w, m, d)
        val = np.asarray(rows["val_loss"])  # (windows, members)
        score = np.asarray(rows["score"])[-1]
        order = np.lexsort((np.nan_to_num(val[-1], nan=np.inf), -np.nan_to_num(score, nan=-1.0)))
        out.append(
            {
                "val_score": score,
                "test_accuracy": np.asarray(final["score"]),
                "test_f1": np.asarray(final["f1"]),
                "final_val_loss": val[-1],
                "plateau": np.asarray([plateau_window(val[:, m]) for m in range(members)]),
                "selected": int(order[0]),
                "trajectory_std": {
                    n: float(unit[..., i].std(axis=1).mean()) for i, n in enumerate(names)
                },
                "hparams": {n: np.asarray(rows[n]) for n in names},
                "seconds": seconds,
            }
        )
    return out


def decision_ms(tuner, task, repeats: int = 50) -> float:
    """Milliseconds per jitted ``tuner.update`` call on one run (after compiling)."""
    from ..core.base import Observation

    hp = {k: jnp.float32(v) for k, v in task.default_hparams.items()}
    state = tuner.init(jax.random.key(0), hp)
    obs = Observation(
        jnp.float32(0.5),
        jnp.float32(0.6),
        hparams=hp,
        horizon=10,
        loss=jnp.float32(1.0),
        train_loss=jnp.float32(0.9),
    )
    update = jax.jit(tuner.update)
    proposal, state = update(state, obs)
    jax.block_until_ready(proposal)
    t0 = time.perf_counter()
    for _ in range(repeats):
        proposal, state = update(state, obs)
    jax.block_until_ready(proposal)
    return (time.perf_counter() - t0) / repeats * 1e3
