"""Meta-training: PPO over many inner training runs stepping as one program.

Each PPO iteration starts ``runs`` fresh inner runs (on a bank, each draws its data
set; half start from random hyperparameters), lets the controller make ``windows``
decisions in each, then takes ``update_epochs`` of minibatch PPO steps on the
``runs x windows`` decisions. The inner runs are vmapped: one iteration is one
compiled call, whatever ``runs`` is. The PPO is :class:`hagfish_jax.rl.PPO` on the
environment of :mod:`hagfish_jax.control.env` (``rollout_episodes=True``).

:func:`meta_train` saves the controller to a directory every ``save_every``
iterations and resumes from its latest checkpoint: called again with more
iterations, the same controller keeps learning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core._checks import integer
from ..core.space import Space
from ..rl.ppo import PPO
from .controller import SPEC_FILE, TRAINING_FILE, Controller, Spec, _plain_json, load_state
from .env import HParamEnv

__all__ = ["MetaConfig", "MetaResult", "make_env", "make_ppo", "meta_train"]


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """Meta-training settings.

    Attributes:
      runs: inner runs per iteration (vmapped; PPO's environments).
      windows: decisions per inner run.
      step: the move per action in the unit cube.
      cost_weight: the reward's compute weight.
      random_start: share of runs that start from random hyperparameters.
      hidden: width of the policy network.
      learning_rate, update_epochs, num_minibatches, ent_coef, gamma, gae_lambda:
        PPO's.
    """

    runs: int = 32
    windows: int = 10
    step: float = 0.125
    cost_weight: float = 0.01
    random_start: float = 0.5
    hidden: int = 64
    learning_rate: float = 1e-3
    update_epochs: int = 4
    num_minibatches: int = 4
    ent_coef: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.95

    def __post_init__(self):
        integer("MetaConfig: runs", self.runs, 1)
        integer("MetaConfig: windows", self.windows, 1)
        if (self.runs * self.windows) % self.num_minibatches:
            raise ValueError(
                f"MetaConfig: runs * windows ({self.runs * self.windows}) must be divisible "
                f"by num_minibatches ({self.num_minibatches})"
            )


@dataclasses.dataclass
class MetaResult:
    """What :func:`meta_train` returns.

    Attributes:
      controller: the trained :class:`Controller`.
      history: one dict per iteration run now (``iteration``, ``mean_return``,
        ``final_val_loss`` as a share of the first window's, ``final_score``,
        ``seconds``).
      inner_steps_per_second: inner optimizer steps per second over this call's
        iterations after the first (the first compiles).
    """

    controller: Controller
    history: list[dict]
    inner_steps_per_second: float | None


def make_env(task, config: MetaConfig, space: Space | None = None) -> HParamEnv:
    return HParamEnv(
        task,
        space,
        windows=config.windows,
        step=config.step,
        cost_weight=config.cost_weight,
        random_start=config.random_start,
    )


def make_ppo(env: HParamEnv, config: MetaConfig) -> PPO:
    return PPO(
        num_envs=config.runs,
        num_steps=config.windows,
        update_epochs=config.update_epochs,
        num_minibatches=config.num_minibatches,
        updates_per_window=1,
        hidden=config.hidden,
        max_episode_steps=config.windows,
        environment=env,
        rollout_episodes=True,
    )


_COMPILED: dict[tuple, tuple] = {}


def _compiled(task, config: MetaConfig, space: Space | None):
    """The environment, PPO and jitted iteration for ``(task, config, space)``, kept for
    the process: a second ``meta_train`` on the same task (a resume, more iterations
    from a notebook) compiles nothing."""
    cache_key = (id(task), config, space)
    hit = _COMPILED.get(cache_key)
    if hit is None or hit[0] is not task:
        env = make_env(task, config, space)
        ppo = make_ppo(env, config)
        hit = (task, env, ppo, jax.jit(ppo.train_window), jax.jit(ppo.init))
        while len(_COMPILED) >= 4:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[cache_key] = hit
    return hit[1:]


def _ppo_hparams(config: MetaConfig) -> dict:
    return {
        "learning_rate": config.learning_rate,
        "ent_coef": config.ent_coef,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
    }


def _training_record(task, config: MetaConfig, setting: dict | None) -> dict:
    """What defines a meta-training besides the controller's own spec, as JSON values."""
    record = {
        "config": dataclasses.asdict(config),
        "task": getattr(task, "name", None),
        "datasets": getattr(task, "datasets", None),
        "setting": dict(setting or {}),
    }
    return _plain_json(record)


def _check_training(directory: Path, record: dict, resume: bool) -> None:
    """Refuse to resume a directory trained another way (the record itself is written
    with every checkpoint, by :meth:`Controller.save`)."""
    path = directory / TRAINING_FILE
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        if saved != record:
            changed = []
            for part in ("config", "setting"):
                a, b = saved.get(part) or {}, record[part]
                changed += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted({*a, *b})
                            if a.get(k) != b.get(k)]
            changed += [f"{k}: {saved.get(k)!r} -> {record[k]!r}" for k in ("task", "datasets")
                        if saved.get(k) != record[k]]
            raise ValueError(
                f"meta_train: {directory} holds a controller trained another way "
                f"({'; '.join(changed)}); resume it with the same options, or use a new "
                "directory"
            )


def meta_train(
    task,
    iterations: int,
    config: MetaConfig = MetaConfig(),
    *,
    key: int | jax.Array = 0,
    directory: str | os.PathLike | None = None,
    save_every: int = 10,
    space: Space | None = None,
    callback: Callable[[dict], Any] | None = None,
    setting: dict[str, Any] | None = None,
) -> MetaResult:
    """Train (or keep training) a controller on ``task`` (a bank or one data set).

    Args:
      task: a task whose ``evaluate`` reports ``val_loss`` and ``train_loss``, with
        the dimensions to control dynamic (:func:`hagfish_jax.control.make_task`).
      iterations: the total iterations wanted; with a ``directory`` that already
        holds a resumable controller, only the missing ones run.
      config: :class:`MetaConfig`.
      key: seed or PRNG key.
      directory: where to save and resume (``None``: keep it in memory).
      save_every: iterations between saves (and a save at the end).
      space: the dimensions to control (default the task's dynamic ones).
      callback: called with each iteration's history row (progress bars).
      setting: anything else that defines this training (the data's seed, which
        families were held out), JSON values.

    Raises:
      ValueError: the space to control has a dimension that is not an interval (a
        ``Choice``), refused before any training; or ``directory`` holds a controller
        trained another way: another
        controller setting (space, step, horizon, width), another ``config`` (runs,
        windows, PPO's values), another task (its name and number of data sets) or
        another ``setting``. The training's record is ``training.json`` there.
    """
    integer("meta_train: iterations", iterations, 0)
    integer("meta_train: save_every", save_every, 1)
    env, ppo, step, init = _compiled(task, config, space)
    try:
        spec = Spec(
            space=env.space,
            start={n: float(task.default_hparams[n]) for n in env.space.names},
            step=config.step,
            horizon=env.horizon,
            hidden=config.hidden,
            cost_weight=config.cost_weight,
            window_steps=getattr(task, "steps_per_window", None),
        )
    except ValueError as err:  # a space the controller could not be saved with
        raise ValueError(f"meta_train: {err}") from None
    saved_spec = None if directory is None else Path(directory) / SPEC_FILE
    resume = saved_spec is not None and saved_spec.is_file()
    if resume and json.loads(saved_spec.read_text()) != _plain_json(spec.to_json()):
        raise ValueError(
            f"meta_train: {directory} holds a controller for another setting "
            f"({saved_spec.read_text()}); use a new directory"
        )
    record = _training_record(task, config, setting)
    if directory is not None:
        _check_training(Path(directory), record, resume)
    key = jax.random.key(key) if isinstance(key, int) else key
    k_init, key = jax.random.split(key)
    state = init(k_init, _ppo_hparams(config))
    done = 0
    if resume:
        saved, tree = load_state(directory, {"opt_state": state.opt_state, "key": key})
        state = state._replace(params=saved.params)
        if tree is not None:
            state = state._replace(opt_state=tree["opt_state"])
            key = tree["key"]
        done = saved.iterations
    history: list[dict] = []
    timed, timed_seconds = 0, 0.0
    inner_steps = config.runs * env.horizon * getattr(task, "steps_per_window", 1)

    continues = resume  # a fresh training's first save clears what the directory held

    def save(it: int):
        nonlocal continues
        if directory is not None:
            Controller(state.params, spec, it, record).save(
                directory, state.opt_state, key, replace=not continues
            )
            continues = True

    for it in range(done, iterations):
        key, k = jax.random.split(key)
        t0 = time.perf_counter()
        state, _ = step(state, k)
        h = state.env_state.history
        final = jnp.mean(h.val[..., -1] / h.first)
        row = {
            "iteration": it + 1,
            "mean_return": float(jnp.mean(state.last_return)),
            "final_val_loss": float(final),
            "final_score": float(jnp.mean(state.env_state.score)),
        }
        row["seconds"] = time.perf_counter() - t0
        if it > done:
            timed, timed_seconds = timed + 1, timed_seconds + row["seconds"]
        history.append(row)
        if callback is not None:
            callback(row)
        if (it + 1) % save_every == 0 or it + 1 == iterations:
            save(it + 1)
    rate = timed * inner_steps / timed_seconds if timed else None
    controller = Controller(state.params, spec, max(done, iterations), record)
    return MetaResult(controller, history, rate)


def returns_of(history: list[dict]) -> np.ndarray:
    """The ``mean_return`` column."""
    return np.asarray([r["mean_return"] for r in history])


def episode_returns(env: HParamEnv, act, key, runs: int = 32) -> dict:
    """Play ``runs`` episodes of ``env`` at once with ``act(obs, key) -> action``.

    ``act`` may be a list of policies: they play the same ``runs`` episodes (same
    keys: same data sets, initial weights and batches; a paired comparison) in one
    compiled program, and every array gains a leading policy axis.

    Returns numpy arrays per run: ``return`` (the episode's summed reward),
    ``final_val_loss`` (over the first window's), ``final_score`` and ``trajectory``
    (the unit coordinates after each decision, ``(runs, windows, d)``).
    """
    acts = list(act) if isinstance(act, (list, tuple)) else [act]

    def one(k, which):
        k0, k = jax.random.split(k)
        state = env.initial(k0)

        def step(carry, k):
            state, total = carry
            k_act, k_step = jax.random.split(k)
            obs = env.observation(state, None)
            action = jax.lax.switch(which, [lambda o, kk, a=a: a(o, kk) for a in acts], obs, k_act)
            nxt = env.transition(state, action, k_step)
            total = total + env.reward(state, action, nxt, None)
            return (nxt, total), nxt.unit

        (state, total), units = jax.lax.scan(
            step, (state, jnp.float32(0.0)), jax.random.split(k, env.windows)
        )
        h = state.history
        return total, h.val[-1] / h.first, state.score, units

    keys = jax.random.split(key, runs)
    keys = jnp.concatenate([keys] * len(acts)) if len(acts) > 1 else keys
    which = jnp.repeat(jnp.arange(len(acts)), runs)
    total, final, score, units = jax.jit(jax.vmap(one))(keys, which)
    out = {
        "return": np.asarray(total),
        "final_val_loss": np.asarray(final),
        "final_score": np.asarray(score),
        "trajectory": np.asarray(units),
    }
    if len(acts) > 1:
        out = {k: v.reshape((len(acts), runs) + v.shape[1:]) for k, v in out.items()}
    return out
