"""PPO on an ordinary (numpy) gymnasium environment, stepped from Python.

For environments that are not written in JAX: the environments are a
``gymnasium.vector.SyncVectorEnv`` stepped from Python, the policy is one jitted call
per step, and the learning update is the same jitted :meth:`PPO.learn` as the JAX
path. The returned ``train_window``/``evaluate`` plug straight into
:class:`hagfish_jax.Loop` (they are plain callables, not jitted as a whole), so the
loop's backoff, rollback, tuner and advisor work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.hparams import ExtraHParams, extra_hparams, set_hparams
from .ppo import _EXTRA, PPO, Transition, default_hparams

__all__ = ["NumpyAgent", "NumpyPPO"]


class NumpyAgent(NamedTuple):
    """The learner's pytree (the environments live in :class:`NumpyPPO`)."""

    params: Any
    opt_state: Any
    extra: ExtraHParams
    steps: jax.Array


class NumpyPPO:
    """PPO whose rollouts come from ``num_envs`` copies of ``make_env()``.

    Args:
      make_env: returns a gymnasium environment with a discrete action space;
        default ``gymnasium.make("CartPole-v1")``.
      ppo: the PPO configuration (its ``num_envs``, ``num_steps``,
        ``updates_per_window``, network and optimizer are used).
      seed: seeds the environments' resets.
    """

    def __init__(
        self, make_env: Callable[[], Any] | None = None, ppo: PPO | None = None, seed: int = 0
    ):
        import gymnasium

        if make_env is None:
            make_env = lambda: gymnasium.make("CartPole-v1")  # noqa: E731
        self.ppo = ppo or PPO(num_envs=8, num_steps=128, updates_per_window=1)
        self.envs = gymnasium.vector.SyncVectorEnv([make_env] * self.ppo.num_envs)
        obs, _ = self.envs.reset(seed=seed)
        self.obs = np.asarray(obs, np.float32)
        self.ep_return = np.zeros(self.ppo.num_envs)
        self.last_return = np.zeros(self.ppo.num_envs)
        network = self.ppo.network

        @jax.jit
        def act(params, obs, key):
            logits, value = network.apply(params, obs)
            action = jax.random.categorical(key, logits)
            log_prob = jax.nn.log_softmax(logits)[jnp.arange(obs.shape[0]), action]
            return action, log_prob, value

        self._act = act
        self._learn = jax.jit(self.ppo.learn)

    def init(self, key, hparams=None) -> NumpyAgent:
        """A fresh learner with ``hparams`` (defaults for missing names)."""
        hp = {**default_hparams, **(hparams or {})}
        params = self.ppo.network.init(key, jnp.asarray(self.obs[0]))
        agent = NumpyAgent(
            params=params,
            opt_state=self.ppo.tx(default_hparams["learning_rate"]).init(params),
            extra=extra_hparams(**{k: default_hparams[k] for k in _EXTRA}),
            steps=jnp.zeros((), jnp.int32),
        )
        return set_hparams(agent, hp)

    def train_window(self, agent: NumpyAgent, key) -> tuple[NumpyAgent, dict]:
        """``updates_per_window`` rollouts from Python, each followed by a jitted update."""
        n_env, n_steps = self.ppo.num_envs, self.ppo.num_steps
        for u in range(self.ppo.updates_per_window):
            k_roll, k_learn = jax.random.split(jax.random.fold_in(key, u))
            cols: dict[str, list] = {f: [] for f in Transition._fields}
            for k in jax.random.split(k_roll, n_steps):
                action, log_prob, value = jax.device_get(self._act(agent.params, self.obs, k))
                obs, reward, term, trunc, _ = self.envs.step(np.asarray(action))
                done = np.logical_or(term, trunc)
                self.ep_return += reward
                self.last_return = np.where(done, self.ep_return, self.last_return)
                self.ep_return = np.where(done, 0.0, self.ep_return)
                for f, v in zip(
                    Transition._fields, (self.obs, action, log_prob, value, reward, done, term)
                ):
                    cols[f].append(np.asarray(v))
                self.obs = np.asarray(obs, np.float32)
            traj = Transition(**{f: np.stack(v) for f, v in cols.items()})
            traj = traj._replace(reward=traj.reward.astype(np.float32))
            params, opt_state = self._learn(
                agent.params, agent.opt_state, agent.extra.hyperparams, traj, self.obs, k_learn
            )
            agent = agent._replace(
                params=params, opt_state=opt_state, steps=agent.steps + n_env * n_steps
            )
        return agent, {"mean_return": float(np.mean(self.last_return))}

    def evaluate(self, agent: NumpyAgent) -> dict:
        """``score``: mean return of each environment's last finished episode."""
        del agent
        return {"score": float(np.mean(self.last_return))}
