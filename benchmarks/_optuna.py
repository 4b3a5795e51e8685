"""The Optuna side of the population benchmarks: two wirings of a digits trial and a study.

* :func:`inject_programs`: the digits task as is (``inject_hyperparams``), so init,
  train and evaluate compile once for every trial;
* :func:`rebuilt_programs`: ``optax.adamw`` built from the sampled Python floats per
  trial (dropout rate and label smoothing Python constants too), a fresh jit each;
* :func:`run_optuna`: a study over either wiring, up to an optimizer-step budget.

Optuna is needed (``pip install 'hagfish-jax[bench]'``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj
from _common import READ, Measure, Result, Selection, Setup
from hagfish_jax.tasks import digits


def _read(metrics: dict) -> dict:
    """The metrics a trial reads (``_common.READ``), and only those: every method
    computes the same work."""
    return {k: metrics[k] for k in READ}


class _Params(NamedTuple):  # what task.evaluate reads from a train state
    params: Any


def _suggest(trial, space: hj.Space) -> dict[str, float]:
    return {
        name: trial.suggest_float(name, dim.low, dim.high, log=isinstance(dim, hj.LogUniform))
        for name, dim in space.dims.items()
    }


def inject_programs(task: digits.DigitsTask, seed: int):
    """The ``inject_hyperparams`` wiring: init, train and evaluate, each compiled once.

    Hyperparameters are float32 arrays in the train state; window ``i`` uses the key
    ``fold_in(key(seed), i)`` so both wirings see the same batches and dropout masks.
    """
    base = jax.random.key(seed)

    @jax.jit
    def init(i, hp):
        return task.init(jax.random.fold_in(base, i), hp)

    @jax.jit
    def train(state, i):
        return task.train_window(state, jax.random.fold_in(base, i))[0]

    def start(i: int, hp: dict[str, float]):
        return init(i, {k: np.float32(v) for k, v in hp.items()})

    return start, (lambda hp: train), jax.jit(lambda state: _read(task.evaluate(state)))


def rebuilt_programs(task: digits.DigitsTask, setup: Setup, seed: int):
    """The rebuilt-per-trial wiring, as a typical Optuna user writes it.

    ``make_train(hp)`` builds ``optax.adamw`` from Python floats, with dropout rate and
    label smoothing as Python constants, and returns a freshly jitted train window:
    one XLA compile per trial. Initialisation and evaluation do not depend on the
    hyperparameters, so they are jitted once and shared (the cheapest honest version
    of this wiring). The train window is the digits task's, step for step.
    """
    data = task.data
    if setup.model == "mlp":
        net = digits.MLP(hidden=setup.hidden)
    else:
        net = digits.CNN(hidden=setup.hidden[0] if setup.hidden else 64)
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    n_train = len(data.y_train)
    per_epoch = n_train // setup.batch_size
    steps = task.steps_per_window
    epochs = -(-steps // per_epoch)
    base = jax.random.key(seed)
    # adamw's state holds no hyperparameter values: one shared init serves every trial.
    reference = optax.adamw(1e-3)

    @jax.jit
    def init(i):
        params = net.init(
            jax.random.fold_in(base, i), x_train[:1], dropout_rate=0.0, deterministic=True
        )
        return params, reference.init(params)

    evaluate = jax.jit(lambda state: _read(task.evaluate(_Params(state[0]))))

    def make_train(hp: dict[str, float]):
        tx = optax.adamw(
            float(hp["learning_rate"]), b1=float(hp["b1"]), weight_decay=float(hp["weight_decay"])
        )
        rate, smoothing = float(hp["dropout_rate"]), float(hp["label_smoothing"])

        def loss_fn(params, x, y, key):
            logits = net.apply(
                params, x, dropout_rate=rate, deterministic=False, rngs={"dropout": key}
            )
            labels = optax.smooth_labels(jax.nn.one_hot(y, 10), smoothing)
            return optax.softmax_cross_entropy(logits, labels).mean()

        def train_window(state, i):
            shuffle_key, dropout_key = jax.random.split(jax.random.fold_in(base, i))
            # the digits task's own shuffle (one draw of 32-bit keys, sorted)
            perms = jnp.argsort(
                jax.random.bits(shuffle_key, (epochs, n_train), jnp.uint32), axis=1
            )
            batches = perms[:, : per_epoch * setup.batch_size]
            batches = batches.reshape(-1, setup.batch_size)[:steps]

            def step(state, inputs):
                (params, opt_state), (idx, k) = state, inputs
                grads = jax.grad(loss_fn)(params, x_train[idx], y_train[idx], k)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), None

            keys = jax.random.split(dropout_key, steps)
            return jax.lax.scan(step, state, (batches, keys))[0]

        return jax.jit(train_window)

    return (lambda i, hp: init(i)), make_train, evaluate


def run_optuna(
    task: digits.DigitsTask,
    setup: Setup,
    seed: int,
    sampler: str,
    wiring: str,
    budget: int | None = None,
    enqueue: Sequence[dict[str, float]] = (),
    pruner: bool = True,
) -> Result:
    """An Optuna study on ``task``: trials of up to ``setup.windows`` windows each.

    Stops when ``budget`` optimizer steps are spent (the running trial stops there),
    or after the enqueued trials when ``budget`` is None.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spw = task.steps_per_window
    sel = Selection()
    with Measure() as m:
        if wiring == "inject":
            start, make_train, evaluate = inject_programs(task, seed)
        elif wiring == "rebuilt":
            start, make_train, evaluate = rebuilt_programs(task, setup, seed)
        else:
            raise ValueError(f"wiring must be 'inject' or 'rebuilt', got {wiring!r}")
        samplers = {
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        }
        study = optuna.create_study(
            direction="maximize",
            sampler=samplers[sampler](),
            pruner=optuna.pruners.MedianPruner() if pruner else optuna.pruners.NopPruner(),
        )
        for hp in enqueue:
            study.enqueue_trial(hp)
        used = [0]

        def objective(trial):
            hp = _suggest(trial, task.space)
            state = start(trial.number, hp)
            train = make_train(hp)
            best = -math.inf
            for w in range(setup.windows):
                if budget is not None and used[0] >= budget:
                    break
                state = train(state, trial.number * setup.windows + w)
                used[0] += spw
                metrics = evaluate(state)
                val, test = float(metrics["score"]), float(metrics["test"])
                sel.add(used[0], val, test, float(metrics["val_loss"]))
                best = max(best, val)
                trial.report(val, w)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return best

        def stop(study, _trial):
            if budget is not None and used[0] >= budget:
                study.stop()

        study.optimize(objective, n_trials=None if budget else len(enqueue), callbacks=[stop])
    return Result(
        sel.test, sel.val, used[0], m.wall, m.compiles, m.compile_s, sel.curve, len(study.trials)
    )
