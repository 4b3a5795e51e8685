"""The programs behind ``hagfish demo``: a PBT population and a guarded single run on digits.

Shell code: it builds jitted core programs, runs them in ``lax.scan`` chunks (one
compile; the progress callback fires between chunks), and turns their outputs into
host rows and a summary. :func:`write_run` writes a run directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core import ensemble, population, snapshot
from ..core.base import Observation
from ..core.guard import guard
from ..core.hparams import get_hparams, set_hparams
from ..core.tuners import finite_difference, pbt

__all__ = [
    "TASKS",
    "PopulationCarry",
    "TaskTrial",
    "chunk_size",
    "halving_stages",
    "population_program",
    "run_guarded",
    "run_pbt",
    "run_pbt_cartpole",
    "task_trials",
    "write_run",
]

GUARD_TUNED = ("learning_rate", "dropout_rate", "label_smoothing")

Progress = Callable[[int, "dict | None"], None]


def chunk_size(windows: int, chunks: int = 10) -> int:
    """The largest divisor of ``windows`` not above ``windows / chunks``: one compile."""
    target = max(1, windows // chunks)
    return max(d for d in range(1, target + 1) if windows % d == 0)


def _scan_chunks(body, carry, windows: int, progress: Progress | None, on_block, offset=0):
    chunk = chunk_size(windows)
    run = jax.jit(lambda c: jax.lax.scan(body, c, None, length=chunk))
    run = run.lower(carry).compile()  # compile before the progress bar's clock starts
    if progress is not None and offset == 0:
        progress(0, None)
    done = 0
    for _ in range(windows // chunk):
        carry, block = run(carry)
        last = on_block(jax.device_get(block), done)
        done += chunk
        if progress is not None:
            progress(offset + done, last)
    return carry


#: Classification tasks ``hagfish demo`` can run.
TASKS = ("digits", "breast_cancer")


def _make_task(name, seed, model, steps_per_window, hidden, batch_size=None, data=None):
    from ..tasks import breast_cancer, digits

    # each task's own default batch size unless one is given
    common = dict(steps_per_window=steps_per_window, hidden=hidden)
    if batch_size is not None:
        common["batch_size"] = batch_size
    if name == "digits":
        data = digits.load_digits_split(seed) if data is None else data
        return digits.make_task(data, model=model, **common)
    if name == "breast_cancer":
        if model != "mlp":
            raise ValueError(f"the breast_cancer task has an MLP only, got model={model!r}")
        data = breast_cancer.load_breast_cancer_split(seed) if data is None else data
        return breast_cancer.make_task(data, **common)
    raise ValueError(f"unknown task {name!r}; accepted: {TASKS}")


def halving_stages(population: int, generations: int, halvings: int) -> list[tuple[int, int]]:
    """``[(members, generations), ...]`` of successive halving: each stage keeps half
    the members of the one before and runs twice as long, with the generations summing
    to ``generations``; ``halvings=0`` is one stage.

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
    if generations < len(weights):
        raise ValueError(
            f"halving: {halvings} halvings need at least {len(weights)} generations, "
            f"got {generations}"
        )
    lengths = [max(1, int(generations * w / sum(weights))) for w in weights]
    lengths[-1] += generations - sum(lengths)
    return [(population // 2**s, n) for s, n in enumerate(lengths)]


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
    task: str = "digits",
    halving: int = 0,
    batch_size: int | None = None,
    records: Any = None,
    data: Any = None,
) -> dict[str, Any]:
    """Train a PBT population on a classification task; return rows and a summary.

    Members start from hyperparameters drawn from the task's space. Selection uses
    the validation split only; the test split is measured once at the end, for the
    best member seen and for the score-weighted ensemble of the final population.

    With ``halving > 0`` the run is successive halving: after each stage (see
    :func:`halving_stages`) the better half of the members by their last validation
    score go on for twice as long; the rest stop (a ``prune`` event). Each stage
    compiles once (its population size is a new shape). ``cost`` counts batch size x
    epochs for the members that actually trained. With ``records`` (a
    :class:`hagfish_jax.shell.records.RunRecords`) rows and events are written as each
    chunk of generations finishes. ``data`` replaces the task's default splits.
    """
    if population_size < 2:
        raise ValueError(f"run_pbt: population_size must be >= 2, got {population_size!r}")
    if generations < 1:
        raise ValueError(f"run_pbt: generations must be >= 1, got {generations!r}")
    stages = halving_stages(population_size, generations, halving)
    start = time.perf_counter()
    the_task = _make_task(task, seed, model, steps_per_window, hidden, batch_size, data)
    epochs_per_window = the_task.steps_per_window / (
        len(the_task.data.y_train) // the_task.batch_size
    )
    window_cost = the_task.batch_size * epochs_per_window
    names = the_task.space.names
    columns = ("score", "val_loss", "val_f1", "train_score", "train_loss", "train_f1")
    columns += ("window_loss", "parent")
    rows: list[dict] = []
    events: list[dict] = []
    ids = np.arange(population_size)  # slot -> member id
    key = jax.random.key(seed)
    k_hp, k_run = jax.random.split(key)
    hparams = the_task.space.sample(k_hp, population_size)
    carry = None
    done_before = 0
    total_cost = 0.0

    for stage, (n, length) in enumerate(stages):
        tuner = pbt(the_task.space, fraction=fraction)
        init, generation = population_program(the_task, tuner, n)
        if carry is None:
            carry = jax.jit(init)(k_run, hparams)
        else:  # the survivors, with a fresh tuner over them; the best member is kept
            k_next, k_tuner = jax.random.split(carry.key)
            carry = PopulationCarry(
                carry.states, tuner.init(k_tuner, get_hparams(carry.states)), carry.best, k_next
            )
        stage_ids = ids.copy()

        def on_block(block, done, stage_ids=stage_ids, n=n, done_before=done_before):
            new_rows, new_events = [], []
            for g in range(block["score"].shape[0]):
                gen = done_before + done + g
                for i in range(n):
                    row = {"generation": gen, "member": int(stage_ids[i])}
                    row.update({k: block[k][g, i].item() for k in columns + names})
                    row["parent"] = int(stage_ids[int(row["parent"])])
                    row["cost"] = window_cost
                    new_rows.append(row)
                    if row["parent"] != row["member"]:
                        new_events.append(
                            {
                                "kind": "exploit",
                                "generation": gen,
                                "member": row["member"],
                                "parent": row["parent"],
                            }
                        )
            rows.extend(new_rows)
            events.extend(new_events)
            if records is not None:
                _record_rows(records, new_rows, new_events)
            last = block["score"][-1]
            return {
                "score": float(np.max(last, initial=-np.inf, where=np.isfinite(last))),
                "learning_rate": float(np.median(block["learning_rate"][-1])),
            }

        carry = _scan_chunks(generation, carry, length, progress, on_block, done_before)
        total_cost += n * length * window_cost
        done_before += length
        if stage + 1 < len(stages):
            keep_n = stages[stage + 1][0]
            last = np.asarray([r["score"] for r in rows[-n:]], np.float64)
            order = np.argsort(-np.where(np.isfinite(last), last, -np.inf), kind="stable")
            keep = np.sort(order[:keep_n])
            for slot in sorted(set(range(n)) - set(keep.tolist())):
                event = {
                    "kind": "prune",
                    "generation": done_before - 1,
                    "member": int(ids[slot]),
                    "score": float(last[slot]),
                }
                events.append(event)
                if records is not None:
                    records.event(**event)
            carry = carry._replace(states=population.select(carry.states, keep))
            ids = ids[keep]

    best_test = float(jax.jit(the_task.test_accuracy)(carry.best.state))

    @jax.jit
    def ensemble_accuracy(states, w, x, y):
        probs = ensemble.predict(the_task.logits, states.params, x, w)
        return jnp.mean(jnp.argmax(probs, -1) == y)

    # The states after the last generation's exploit no longer match the final rows;
    # evaluate the population as it stands now, weighted by its current scores.
    now = jax.jit(jax.vmap(the_task.evaluate))(carry.states)
    weights = ensemble.weights(now["score"])
    data = the_task.data
    ens_test = float(ensemble_accuracy(carry.states, weights, data.x_test, data.y_test))
    ens_val = float(ensemble_accuracy(carry.states, weights, data.x_val, data.y_val))
    best_row = max(
        (r for r in rows if np.isfinite(r["score"])), key=lambda r: r["score"], default=rows[0]
    )
    summary = {
        "task": task,
        "tuner": "pbt",
        "model": model,
        "population": population_size,
        "generations": generations,
        "halving": halving,
        "stages": [list(st) for st in stages],
        "steps_per_window": the_task.steps_per_window,
        "batch_size": the_task.batch_size,
        "total_steps": sum(m * g for m, g in stages) * the_task.steps_per_window,
        "total_cost": total_cost,
        "seed": seed,
        "best_generation": best_row["generation"],
        "best_member": best_row["member"],
        "best_val_accuracy": float(carry.best.score),
        "best_hparams": {n: best_row[n] for n in names},
        "test_accuracy": best_test,
        "ensemble_val_accuracy": ens_val,
        "ensemble_test_accuracy": ens_test,
        "ensemble_weights": [round(float(w), 4) for w in weights],
        "final_members": [int(i) for i in ids],
        "exploits": int(sum(r["parent"] != r["member"] for r in rows)),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }
    meta = {"task": task, "tuner": "pbt", "hparams": list(names), "score": "val_accuracy"}
    return {"summary": summary, "rows": rows, "events": events, "meta": meta}


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

    from ..rl import PPO
    from ..rl import space as rl_space

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
    events = [
        {
            "kind": "exploit",
            "generation": r["generation"],
            "member": r["member"],
            "parent": r["parent"],
        }
        for r in rows
        if r["parent"] != r["member"]
    ]
    meta = {"task": "cartpole", "tuner": "pbt", "hparams": list(names), "score": "score"}
    return {"summary": summary, "rows": rows, "events": events, "meta": meta}


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
    from ..tasks import digits

    if windows < 1:
        raise ValueError(f"run_guarded: windows must be >= 1, got {windows!r}")
    start = time.perf_counter()
    task = _make_task("digits", seed, model, steps_per_window, hidden)
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
    events = [
        {"kind": "rollback", "window": r["window"], "score": r["score"]}
        for r in rows
        if r["rollback"]
    ]
    meta = {
        "task": "digits",
        "tuner": summary["tuner"],
        "hparams": list(names),
        "score": "val_accuracy",
    }
    return {"summary": summary, "rows": rows, "events": events, "meta": meta}


# -- trials for the budget planner -------------------------------------------------------


class TaskTrial:
    """A :class:`hagfish_jax.shell.budget.Trial` on a built-in classification task: one
    window per epoch, the best-validation state kept, cost = batch size x epochs run.

    Args:
      task: a task from ``make_task`` (its window must be one epoch).
      seed: seeds the initial weights and the minibatch order.
      hparams: hyperparameters (default the task's defaults).
      compiled: the task's jitted ``(train_window, evaluate, test_accuracy)``, to share.
      budget: the planned budget, recorded in every row beside the hyperparameters.
    """

    def __init__(
        self,
        task,
        seed: int = 0,
        hparams: dict[str, float] | None = None,
        compiled: tuple | None = None,
        budget: dict[str, int] | None = None,
    ):
        self.task = task
        self.budget = dict(budget or {})
        self.metric = -float("inf")
        self.cost = 0.0
        self.epochs = 0
        init_key, self.key = jax.random.split(jax.random.key(seed))
        self.state = task.init(init_key, {**task.default_hparams, **(hparams or {})})
        self.best_state = self.state
        self._window, self._evaluate, self._test = compiled or _jitted(task)

    def advance(self, epochs: int) -> list[dict[str, Any]]:
        rows = []
        for _ in range(int(epochs)):
            self.key, k = jax.random.split(self.key)
            in_force = get_hparams(self.state)
            self.state, train = self._window(self.state, k)
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


def _jitted(task) -> tuple:
    return jax.jit(task.train_window), jax.jit(task.evaluate), jax.jit(task.test_accuracy)


def task_trials(
    build: Callable[[int, int], Any], seed: int = 0, hparams: dict[str, float] | None = None
) -> Callable[[dict[str, int]], TaskTrial]:
    """A ``start_trial`` for :func:`hagfish_jax.shell.budget.run_planner`: ``build(batch_size,
    width)`` makes the task (once per pair; later trials reuse its compiled functions)."""
    tasks: dict[tuple[int, int], tuple[Any, tuple]] = {}

    def start(params: dict[str, int]) -> TaskTrial:
        shape = (int(params["batch_size"]), int(params.get("width", 32)))
        if shape not in tasks:
            task = build(*shape)
            tasks[shape] = (task, _jitted(task))
        task, compiled = tasks[shape]
        return TaskTrial(task, seed=seed, hparams=hparams, compiled=compiled, budget=params)

    return start


# -- run directory ------------------------------------------------------------------------


#: In-memory row keys -> run-record columns (see :mod:`hagfish_jax.shell.records`).
_RECORD_NAMES = {
    "generation": "window",
    "score": "val_accuracy",
    "train_score": "train_accuracy",
}


def _record_row(row: dict[str, Any], classification: bool) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if k == "member":
            continue
        name = _RECORD_NAMES.get(k, k) if classification or k == "generation" else k
        out[name] = bool(v) if k == "rollback" else v
    return out


def _trial_name(row: dict[str, Any]) -> str:
    return f"member_{int(row['member']):02d}" if "member" in row else "run"


def _by_trial(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(_trial_name(row), []).append(row)
    return out


def _record_rows(records: Any, rows: list[dict], events: list[dict], classification=True):
    for trial, trial_rows in _by_trial(rows).items():
        records.log(trial, [_record_row(r, classification) for r in trial_rows])
    for event in events:
        records.event(**event)


def write_run(out: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Write a run directory (:mod:`hagfish_jax.shell.records`): ``run.json``, per-member (or
    ``run``) ``metrics.csv`` and ``summary.json``, ``events.jsonl``, ``trials_summary.csv``,
    ``best_overall.json`` and the run's ``summary.json``; PNG plots when matplotlib is
    installed. Rows already recorded (an incremental or repeated write) are not
    duplicated; a directory holding another run (a different task or tuner) is
    replaced."""
    from .records import RunRecords

    summary = result["summary"]
    meta = result.get("meta") or {"task": summary.get("task"), "tuner": summary.get("tuner")}
    classification = summary.get("task") in TASKS
    records = RunRecords(out, meta=meta, on_mismatch="replace")
    _record_rows(records, result["rows"], result.get("events", []), classification)
    for trial, trial_rows in sorted(_by_trial(result["rows"]).items()):
        scores = np.array([r["score"] for r in trial_rows], np.float64)
        finite = np.where(np.isfinite(scores), scores, -np.inf)
        best = trial_rows[int(np.argmax(finite))]
        names = [n for n in meta.get("hparams", []) if n in best]
        trial_summary = {
            "best_val_score": float(np.max(finite)) if np.isfinite(finite).any() else None,
            "best_window": best.get("generation", best.get("window")),
            "windows": len(trial_rows),
            "cost": float(sum(r.get("cost", 0.0) for r in trial_rows)),
            "hparams": {n: best[n] for n in names},
        }
        if trial == "run" and "test_accuracy" in summary:
            trial_summary["test_score"] = summary["test_accuracy"]
        if "best_member" in summary and trial == _trial_name({"member": summary["best_member"]}):
            trial_summary["test_score"] = summary.get("test_accuracy")
        records.finish_trial(trial, trial_summary)
    records.write_summary(summary)
    from . import plots  # imports matplotlib only when drawing

    try:
        plots.plot_run(records.path)
    except ImportError:  # matplotlib is not installed
        pass
    return records.path
