"""The programs behind ``hagfish demo``: a PBT population and a guarded single run on digits.

Shell code: it builds jitted core programs, runs them in ``lax.scan`` chunks (one
compile; the progress callback fires between chunks), and turns their outputs into
host rows and a summary. :func:`write_run` writes a run directory.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import ensemble, population, snapshot
from .base import Observation
from .guard import guard
from .hparams import get_hparams, set_hparams
from .tuners import finite_difference, pbt

__all__ = [
    "PopulationCarry",
    "chunk_size",
    "population_program",
    "run_guarded",
    "run_pbt",
    "run_pbt_cartpole",
    "write_run",
]

GUARD_TUNED = ("learning_rate", "dropout_rate", "label_smoothing")

Progress = Callable[[int, "dict | None"], None]


def chunk_size(windows: int, chunks: int = 10) -> int:
    """The largest divisor of ``windows`` not above ``windows / chunks``: one compile."""
    target = max(1, windows // chunks)
    return max(d for d in range(1, target + 1) if windows % d == 0)


def _scan_chunks(body, carry, windows: int, progress: Progress | None, on_block):
    chunk = chunk_size(windows)
    run = jax.jit(lambda c: jax.lax.scan(body, c, None, length=chunk))
    run = run.lower(carry).compile()  # compile before the progress bar's clock starts
    if progress is not None:
        progress(0, None)
    done = 0
    for _ in range(windows // chunk):
        carry, block = run(carry)
        last = on_block(jax.device_get(block), done)
        done += chunk
        if progress is not None:
            progress(done, last)
    return carry


def _digits_task(seed, model, steps_per_window, hidden):
    from .tasks import digits

    data = digits.load_digits_split(seed)
    return digits.make_task(data, model=model, steps_per_window=steps_per_window, hidden=hidden)


# -- population-based training ----------------------------------------------------------


class PopulationCarry(NamedTuple):
    """What one PBT generation carries to the next."""

    states: Any  # the task's train states, leading axis N
    tuner_state: Any
    best: snapshot.Snapshot  # the best single member seen so far (validation score)
    key: jax.Array


def population_program(task, tuner, n: int):
    """``(init, generation)`` for a vmapped PBT population of ``n`` on a task.

    ``init(key, hparams)`` takes ``(N,)`` hyperparameters; ``generation(carry, _)``
    trains every member for one window (vmapped), evaluates, lets ``tuner`` rank and
    explore, copies weights with one gather, writes the new hyperparameters and keeps
    the best member seen so far. Its row holds each member's metrics, parent and the
    hyperparameters it trained with.
    """

    def init(key, hparams) -> PopulationCarry:
        k_members, k_tuner, key = jax.random.split(key, 3)
        states = jax.vmap(task.init)(jax.random.split(k_members, n), hparams)
        one = jax.tree.map(lambda x: x[0], states)
        return PopulationCarry(states, tuner.init(k_tuner, hparams), snapshot.init(one), key)

    def generation(carry: PopulationCarry, _=None):
        key, k_train = jax.random.split(carry.key)
        in_force = get_hparams(carry.states)
        states, train_metrics = jax.vmap(task.train_window)(
            carry.states, jax.random.split(k_train, n)
        )
        metrics = jax.vmap(task.evaluate)(states)
        if "diverged" in train_metrics:  # a diverged member scores NaN and is replaced
            metrics["score"] = jnp.where(train_metrics["diverged"], jnp.nan, metrics["score"])
        score = metrics["score"]
        safe = jnp.where(jnp.isfinite(score), score, -jnp.inf)
        leader = jnp.argmax(safe)
        best = snapshot.update(carry.best, jax.tree.map(lambda x: x[leader], states), score[leader])
        proposal, tuner_state = tuner.update(
            carry.tuner_state, Observation(score, metrics.get("train_score"))
        )
        states = population.exploit(states, proposal.parents)
        states = set_hparams(states, proposal.hparams)
        row = {
            **metrics,
            **{f"window_{k}": v for k, v in train_metrics.items()},
            "parent": proposal.parents,
            **{k: in_force[k] for k in task.space.names},
        }
        return PopulationCarry(states, tuner_state, best, key), row

    return init, generation


def run_pbt(
    population_size: int = 16,
    generations: int = 30,
    seed: int = 0,
    model: str = "mlp",
    steps_per_window: int | None = None,
    hidden: Sequence[int] = (64,),
    fraction: float = 0.25,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train a PBT population on digits; return per-member rows and a summary.

    Members start from hyperparameters drawn from the task's space. Selection uses
    the validation split only; the test split is measured once at the end, for the
    best member seen and for the score-weighted ensemble of the final population.
    """
    if population_size < 2:
        raise ValueError(f"run_pbt: population_size must be >= 2, got {population_size!r}")
    if generations < 1:
        raise ValueError(f"run_pbt: generations must be >= 1, got {generations!r}")
    start = time.perf_counter()
    task = _digits_task(seed, model, steps_per_window, hidden)
    tuner = pbt(task.space, fraction=fraction)
    init, generation = population_program(task, tuner, population_size)
    key = jax.random.key(seed)
    k_hp, k_run = jax.random.split(key)
    carry = jax.jit(init)(k_run, task.space.sample(k_hp, population_size))
    names = task.space.names
    columns = ("score", "val_loss", "train_score", "train_loss", "window_loss", "parent")
    rows: list[dict] = []

    def on_block(block, done):
        for g in range(block["score"].shape[0]):
            for i in range(population_size):
                row = {"generation": done + g, "member": i}
                row.update({k: block[k][g, i].item() for k in columns + names})
                rows.append(row)
        return {
            "score": float(np.nanmax(block["score"][-1])),
            "learning_rate": float(np.median(block["learning_rate"][-1])),
        }

    carry = _scan_chunks(generation, carry, generations, progress, on_block)

    best_test = float(jax.jit(task.test_accuracy)(carry.best.state))

    @jax.jit
    def ensemble_accuracy(states, w, x, y):
        probs = ensemble.predict(task.logits, states.params, x, w)
        return jnp.mean(jnp.argmax(probs, -1) == y)

    # The states after the last generation's exploit no longer match the final rows;
    # evaluate the population as it stands now, weighted by its current scores.
    now = jax.jit(jax.vmap(task.evaluate))(carry.states)
    weights = ensemble.weights(now["score"])
    data = task.data
    ens_test = float(ensemble_accuracy(carry.states, weights, data.x_test, data.y_test))
    ens_val = float(ensemble_accuracy(carry.states, weights, data.x_val, data.y_val))
    best_row = max(
        (r for r in rows if np.isfinite(r["score"])), key=lambda r: r["score"], default=rows[0]
    )
    summary = {
        "task": "digits",
        "tuner": "pbt",
        "model": model,
        "population": population_size,
        "generations": generations,
        "steps_per_window": task.steps_per_window,
        "batch_size": task.batch_size,
        "total_steps": population_size * generations * task.steps_per_window,
        "seed": seed,
        "best_generation": best_row["generation"],
        "best_member": best_row["member"],
        "best_val_accuracy": float(carry.best.score),
        "best_hparams": {n: best_row[n] for n in names},
        "test_accuracy": best_test,
        "ensemble_val_accuracy": ens_val,
        "ensemble_test_accuracy": ens_test,
        "ensemble_weights": [round(float(w), 4) for w in weights],
        "exploits": int(sum(r["parent"] != r["member"] for r in rows)),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }
    return {"summary": summary, "rows": rows}


def run_pbt_cartpole(
    population_size: int = 8,
    generations: int = 30,
    seed: int = 0,
    fraction: float = 0.25,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """PBT over a population of PPO agents on the functional CartPole.

    Each generation is one window of PPO updates per member (vmapped); the score
    is the mean return of each member's last finished episodes. Members start from
    hyperparameters drawn from :data:`hagfish_jax.rl.space`.
    """
    import types

    from .rl import PPO
    from .rl import space as rl_space

    if population_size < 2:
        raise ValueError(f"run_pbt_cartpole: population_size must be >= 2, got {population_size!r}")
    if generations < 1:
        raise ValueError(f"run_pbt_cartpole: generations must be >= 1, got {generations!r}")
    start = time.perf_counter()
    ppo = PPO()
    task = types.SimpleNamespace(
        init=ppo.init, train_window=ppo.train_window, evaluate=ppo.evaluate, space=rl_space
    )
    tuner = pbt(rl_space, fraction=fraction)
    init, generation = population_program(task, tuner, population_size)
    k_hp, k_run = jax.random.split(jax.random.key(seed))
    carry = jax.jit(init)(k_run, rl_space.sample(k_hp, population_size))
    names = rl_space.names
    rows: list[dict] = []

    def on_block(block, done):
        for g in range(block["score"].shape[0]):
            for i in range(population_size):
                row = {"generation": done + g, "member": i}
                row.update({k: block[k][g, i].item() for k in ("score", "parent") + names})
                rows.append(row)
        return {
            "score": float(np.max(block["score"][-1])),
            "learning_rate": float(np.median(block["learning_rate"][-1])),
        }

    carry = _scan_chunks(generation, carry, generations, progress, on_block)
    best_row = max(rows, key=lambda r: r["score"])
    steps = ppo.updates_per_window * ppo.num_envs * ppo.num_steps
    solved = [r["generation"] for r in rows if r["score"] >= 475.0]
    summary = {
        "task": "cartpole",
        "tuner": "pbt",
        "population": population_size,
        "generations": generations,
        "env_steps_per_member": generations * steps,
        "total_env_steps": population_size * generations * steps,
        "seed": seed,
        "best_generation": best_row["generation"],
        "best_member": best_row["member"],
        "best_return": float(carry.best.score),
        "best_hparams": {n: best_row[n] for n in names},
        "first_generation_at_475": min(solved) if solved else None,
        "exploits": int(sum(r["parent"] != r["member"] for r in rows)),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }
    return {"summary": summary, "rows": rows}


# -- a guarded single run ---------------------------------------------------------------


def run_guarded(
    windows: int = 40,
    seed: int = 0,
    model: str = "mlp",
    steps_per_window: int | None = None,
    hidden: Sequence[int] = (64,),
    tuned: Sequence[str] = GUARD_TUNED,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train one model on digits with ``guard(finite_difference)``; rows and a summary."""
    from .tasks import digits

    if windows < 1:
        raise ValueError(f"run_guarded: windows must be >= 1, got {windows!r}")
    start = time.perf_counter()
    task = _digits_task(seed, model, steps_per_window, hidden)
    tuner = guard(finite_difference(task.space.subspace(tuned)), space=task.space)
    carry = digits.demo_init(task, tuner, jax.random.key(seed), task.default_hparams)
    columns = ("score", "val_loss", "train_score", "train_loss", "window_loss", "rollback")
    names = task.space.names
    rows: list[dict] = []

    def on_block(block, done):
        for i in range(block["score"].shape[0]):
            rows.append({"window": done + i, **{k: block[k][i].item() for k in columns + names}})
        return rows[-1]

    carry = _scan_chunks(digits.demo_window(task, tuner), carry, windows, progress, on_block)
    snap = carry.snap
    test_acc = float(jax.jit(task.test_accuracy)(snap.state))
    scores = np.array([r["score"] for r in rows], np.float64)
    best = int(np.argmax(np.where(np.isfinite(scores), scores, -np.inf)))
    summary = {
        "task": "digits",
        "tuner": "guard(finite_difference)",
        "model": model,
        "windows": windows,
        "steps_per_window": task.steps_per_window,
        "batch_size": task.batch_size,
        "seed": seed,
        "tuned": list(tuned),
        "best_window": best,
        "best_val_accuracy": float(snap.score),
        "best_hparams": {n: rows[best][n] for n in names},
        "test_accuracy": test_acc,
        "final_val_accuracy": rows[-1]["score"],
        "rollbacks": int(sum(bool(r["rollback"]) for r in rows)),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }
    return {"summary": summary, "rows": rows}


# -- run directory ------------------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_run(out: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Write ``summary.json`` and ``metrics.csv`` (one row per window and member)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    _write_atomic(out / "metrics.csv", write_csv)
    _write_atomic(out / "summary.json", lambda f: json.dump(result["summary"], f, indent=2))
    return out
