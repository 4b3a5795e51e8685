"""Hyperparameter control as a functional gymnasium environment.

:class:`HParamEnv` is a ``gymnasium.experimental.functional.FuncEnv`` whose state is a
whole inner training run on any :class:`hagfish_jax.Task` (weights, optimizer state
with injected hyperparameters, the task's own clock and data position) plus the loss
history the controller reads. Every method is pure, so ``jax.jit`` and ``jax.vmap``
apply: hundreds of inner runs step as one compiled program.

* ``initial(rng)``: a fresh run (the task's ``init``; a bank draws its data set),
  starting from the task's defaults or, with probability ``random_start``, from a
  uniform point of the space; it trains the first window, whose validation loss
  ``L1`` sets the scale of every loss feature.
* ``transition(state, action, rng)``: move the hyperparameters
  (:func:`hagfish_jax.control.features.move`), set them in the run without a retrace,
  train one window, evaluate.
* ``observation(state)``: :func:`hagfish_jax.control.features.observe`.
* ``reward(state, action, next_state)``: the validation improvement over the window,
  ``(L_before - L_after) / L1``, minus ``cost_weight`` times the share of the largest
  setting's compute the window stood for (:func:`hagfish_jax.control.masked.compute_fraction`).
  Over an episode the improvements add up to ``(L1 - L_end) / L1``: the return is how
  much of the first window's loss the run removed, less what its compute cost. A
  non-finite or exploded loss counts as ``LOSS_CAP * L1``, so divergence is a large
  negative reward.
* ``terminal(state)``: after ``windows`` decisions.

:func:`gym_env` wraps it in gymnasium's ``FunctionalJaxEnv`` for RL libraries that
speak the standard ``reset`` / ``step`` API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.experimental.functional import FuncEnv

from ..core._checks import integer
from ..core.hparams import set_hparams
from ..core.space import Space
from ..core.task import check_task
from . import features as F
from .masked import compute_fraction

__all__ = ["EnvState", "HParamEnv", "gym_env"]


class EnvState(NamedTuple):
    """One inner run and what the controller knows of it.

    Attributes:
      run: the task's state.
      unit: the hyperparameters in the unit cube (continuous; integers round on use).
      history: the loss history (:class:`hagfish_jax.control.features.History`).
      cost: the compute share of the last window trained.
      score: the validation score after the last window.
    """

    run: Any
    unit: jax.Array
    history: F.History
    cost: jax.Array
    score: jax.Array


class HParamEnv(FuncEnv):
    """Tune ``task``'s hyperparameters one window at a time.

    Args:
      task: any task whose ``evaluate`` reports ``val_loss`` and ``train_loss``.
      space: the dimensions the controller moves (default: the task's dynamic ones);
        every name must be dynamic in the task's space.
      windows: decisions per episode (the run trains ``windows + 1`` windows).
      step: the move per action in the unit cube.
      cost_weight: the weight of the compute share in the reward.
      cost: ``hparams -> share`` (default :func:`compute_fraction` of ``space``).
      random_start: the probability that an episode starts from a uniform point of
        the space instead of the task's defaults.
    """

    def __init__(
        self,
        task,
        space: Space | None = None,
        windows: int = 10,
        step: float = 0.125,
        cost_weight: float = 0.01,
        cost: Callable[[dict], jax.Array] | None = None,
        random_start: float = 0.5,
    ):
        check_task(task, "HParamEnv")
        space = task.space.subspace(task.space.dynamic) if space is None else space
        fixed = sorted(set(space.names) - task.space.dynamic)
        if fixed:
            raise ValueError(f"HParamEnv: {fixed} are not dynamic dimensions of the task")
        if not 0.0 < step <= 1.0:
            raise ValueError(f"HParamEnv: step must be in (0, 1], got {step!r}")
        if not cost_weight >= 0.0:
            raise ValueError(f"HParamEnv: cost_weight must be >= 0, got {cost_weight!r}")
        if not 0.0 <= random_start <= 1.0:
            raise ValueError(f"HParamEnv: random_start must be in [0, 1], got {random_start!r}")
        super().__init__()
        self.task = task
        self.space = space
        self.windows = integer("HParamEnv: windows", windows, 1)
        self.step = float(step)
        self.cost_weight = float(cost_weight)
        self.cost = compute_fraction(space) if cost is None else cost
        self.random_start = float(random_start)
        d = len(space)
        self.observation_space = spaces.Box(-F.CLIP, F.CLIP, (d + F.NUM_FEATURES,), np.float32)
        self.action_space = spaces.MultiDiscrete([3] * d)
        start = {n: jnp.asarray(task.default_hparams[n], jnp.float32) for n in space.names}
        self._default_unit = np.asarray(space.to_unit(start))

    @property
    def horizon(self) -> int:
        """Windows an episode trains: the first, then one per decision."""
        return self.windows + 1

    def _train(self, run, unit, key):
        hp = self.task.space.clip(self.space.from_unit(unit))
        run = set_hparams(run, hp)
        run, _ = self.task.train_window(run, key)
        ev = self.task.evaluate(run)
        for name in ("val_loss", "train_loss"):
            if name not in ev:
                raise ValueError(f"HParamEnv: the task's evaluate must report {name!r}")
        return run, ev, self.cost(hp)

    def initial(self, rng, params=None) -> EnvState:
        k_start, k_pick, k_init, k_train = jax.random.split(rng, 4)
        uniform = jax.random.uniform(k_start, (len(self.space),), jnp.float32)
        pick = jax.random.bernoulli(k_pick, self.random_start)
        unit = jnp.where(pick, uniform, jnp.asarray(self._default_unit))
        run = self.task.init(k_init, self.task.default_hparams)
        run, ev, cost = self._train(run, unit, k_train)
        history = F.start(ev["val_loss"], ev["train_loss"])
        return EnvState(run, unit, history, jnp.asarray(cost, jnp.float32), ev["score"])

    def transition(self, state: EnvState, action, rng, params=None) -> EnvState:
        unit = F.move(state.unit, action, self.step)
        run, ev, cost = self._train(state.run, unit, rng)
        history = F.push(state.history, ev["val_loss"], ev["train_loss"])
        return EnvState(run, unit, history, jnp.asarray(cost, jnp.float32), ev["score"])

    def observation(self, state: EnvState, rng=None, params=None) -> jax.Array:
        return F.observe(state.history, state.unit, self.horizon)

    def reward(self, state: EnvState, action, next_state: EnvState, rng=None, params=None):
        h0, h1 = state.history, next_state.history
        gain = (h0.val[-1] - h1.val[-1]) / h1.first
        return (gain - self.cost_weight * next_state.cost).astype(jnp.float32)

    def terminal(self, state: EnvState, rng=None, params=None) -> jax.Array:
        return state.history.t >= self.horizon

    def state_info(self, state: EnvState, params=None) -> dict:
        return {"val_loss": state.history.val[-1], "score": state.score}


def gym_env(env: HParamEnv, seed: int | None = None):
    """``env`` behind gymnasium's standard ``reset`` / ``step`` API (jax arrays out):
    ``gym_env(HParamEnv(task)).reset(seed=0)`` gives ``(obs, info)``."""
    from gymnasium.envs.functional_jax_env import FunctionalJaxEnv

    wrapped = FunctionalJaxEnv(env)
    if seed is not None:
        wrapped.rng = jax.random.PRNGKey(seed)
    return wrapped
