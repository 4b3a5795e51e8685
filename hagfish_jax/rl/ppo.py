"""PPO for one agent on a functional JAX environment, written to be vmapped over a population.

The whole update (rollout of ``num_envs x num_steps``, GAE, ``update_epochs`` of
minibatch SGD) is one jittable function. The learning rate lives in an
``optax.inject_hyperparams`` state; the clip ratio, entropy and value coefficients,
gamma and GAE lambda live in an :class:`hagfish_jax.ExtraHParams` beside it, so every
one of them is a traced value that PBT can change without recompiling.

The default environment is gymnasium's functional CartPole
(``gymnasium.envs.phys2d.cartpole.CartPoleFunctional``); episodes are truncated at
``max_episode_steps`` (500, like ``CartPole-v1``). Any other jittable
``gymnasium.experimental.functional.FuncEnv`` with a flat ``Box`` observation and a
``Discrete`` or ``MultiDiscrete`` action space trains the same way
(``PPO(environment=...)``): a ``MultiDiscrete`` action is one categorical per
dimension, with summed log-probabilities and entropies. The learned hyperparameter
controller (:mod:`hagfish_jax.control`) is trained like this.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.hparams import ExtraHParams, extra_hparams, set_hparams
from ..core.space import LogUniform, Space, Uniform

__all__ = ["PPO", "PPOState", "Transition", "default_hparams", "space"]

#: The tunable PPO hyperparameters (all dynamic).
space = Space(
    learning_rate=LogUniform(1e-4, 1e-2),
    clip_eps=Uniform(0.05, 0.4),
    ent_coef=LogUniform(1e-4, 1e-1),
    vf_coef=Uniform(0.1, 1.0),
    gamma=Uniform(0.9, 0.999),
    gae_lambda=Uniform(0.8, 0.99),
)

default_hparams = {
    "learning_rate": 2.5e-3,
    "clip_eps": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
}
_EXTRA = ("clip_eps", "ent_coef", "vf_coef", "gamma", "gae_lambda")

#: Weight of a newly finished episode in ``PPOState.avg_return`` (its first episode
#: sets it): about the last three episodes of each environment count.
RETURN_SMOOTHING = 0.5


class ActorCritic(nn.Module):
    """A 2-layer tanh MLP with a categorical policy head and a value head."""

    num_actions: int
    hidden: int = 64

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.orthogonal(np.sqrt(2))
        a = nn.tanh(nn.Dense(self.hidden, kernel_init=init)(x))
        a = nn.tanh(nn.Dense(self.hidden, kernel_init=init)(a))
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01))(a)
        v = nn.tanh(nn.Dense(self.hidden, kernel_init=init)(x))
        v = nn.tanh(nn.Dense(self.hidden, kernel_init=init)(v))
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(v)
        return logits, value[..., 0]


class PPOState(NamedTuple):
    """One agent: network, optimizer, PPO hyperparameters and its environments."""

    params: Any
    opt_state: Any
    extra: ExtraHParams
    env_state: Any  # (num_envs, ...)
    obs: jax.Array  # (num_envs, obs_dim)
    ep_len: jax.Array  # (num_envs,)
    ep_return: jax.Array  # (num_envs,)
    last_return: jax.Array  # (num_envs,) return of each env's last finished episode
    steps: jax.Array  # environment steps so far
    # (num_envs,) each env's finished returns, exponentially averaged (RETURN_SMOOTHING)
    avg_return: jax.Array
    episodes: jax.Array  # (num_envs,) episodes finished so far


def _smoothed(avg: jax.Array, value: jax.Array, episodes: jax.Array) -> jax.Array:
    """The exponential average of finished returns (the first episode sets it)."""
    new = RETURN_SMOOTHING * value + (1.0 - RETURN_SMOOTHING) * avg
    return jnp.where(episodes == 0, value, new).astype(jnp.float32)


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array  # the episode ended (terminated or truncated) after this step
    terminated: jax.Array  # a true terminal state: no bootstrap


@dataclasses.dataclass(frozen=True)
class PPO:
    """Static PPO configuration; methods are pure and vmappable.

    Attributes:
      num_envs, num_steps: rollout shape per update.
      update_epochs, num_minibatches: SGD passes over each rollout.
      updates_per_window: PPO updates in one ``train_window``.
      hidden: width of the MLPs.
      max_episode_steps: truncation, as ``CartPole-v1``.
      max_grad_norm: gradient clipping.
      environment: the functional environment; ``None`` is CartPole. Its
        ``transition`` gets a fresh key every step.
      rollout_episodes: each rollout is one whole episode of every environment: all
        are reset at the start of each rollout and never within one (nothing is
        computed for a reset at each step). For environments whose episodes all last
        ``num_steps`` steps and whose ``initial`` is costly (the hyperparameter
        control environment trains a window there).

    >>> import jax
    >>> from hagfish_jax.rl import PPO
    >>> ppo = PPO(num_envs=4, num_steps=16)
    >>> state = ppo.init(jax.random.key(0))
    >>> state, metrics = jax.jit(ppo.train_window)(state, jax.random.key(1))
    >>> int(state.steps)  # 4 updates x 4 environments x 16 steps
    256
    """

    num_envs: int = 16
    num_steps: int = 64
    update_epochs: int = 4
    num_minibatches: int = 4
    updates_per_window: int = 4
    hidden: int = 64
    max_episode_steps: int = 500
    max_grad_norm: float = 0.5
    environment: Any = None
    rollout_episodes: bool = False

    def __post_init__(self):
        for name in (
            "num_envs",
            "num_steps",
            "update_epochs",
            "num_minibatches",
            "updates_per_window",
            "hidden",
            "max_episode_steps",
        ):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"PPO: {name} must be an integer >= 1, got {value!r}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(
                "PPO: num_envs * num_steps must be divisible by num_minibatches, got "
                f"{self.num_envs} * {self.num_steps} and {self.num_minibatches}"
            )

    # -- pieces ----------------------------------------------------------------------------
    @property
    def env(self):
        if self.environment is not None:
            return self.environment
        from gymnasium.envs.phys2d.cartpole import CartPoleFunctional

        return CartPoleFunctional()

    @property
    def action_shape(self) -> tuple[int, ...]:
        """``(n,)`` for a ``Discrete(n)`` action; ``(d, n)`` for ``MultiDiscrete([n] * d)``."""
        space = self.env.action_space
        if hasattr(space, "nvec"):
            nvec = np.asarray(space.nvec).ravel()
            if len(set(nvec.tolist())) != 1:
                raise ValueError(f"PPO: MultiDiscrete actions need one size, got {nvec}")
            return (len(nvec), int(nvec[0]))
        return (int(space.n),)

    @property
    def network(self) -> ActorCritic:
        return ActorCritic(int(np.prod(self.action_shape)), self.hidden)

    def _logits(self, params, obs) -> tuple[jax.Array, jax.Array]:
        logits, value = self.network.apply(params, obs)
        return logits.reshape(logits.shape[:-1] + self.action_shape), value

    def _log_prob(self, logits, action) -> jax.Array:
        logp_all = jax.nn.log_softmax(logits)
        if len(self.action_shape) == 1:
            return jnp.take_along_axis(logp_all, action[..., None], axis=-1)[..., 0]
        picked = jnp.take_along_axis(logp_all, action[..., None], axis=-1)[..., 0]
        return jnp.sum(picked, axis=-1)

    def _entropy(self, logits) -> jax.Array:
        logp_all = jax.nn.log_softmax(logits)
        ent = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
        return ent if len(self.action_shape) == 1 else jnp.sum(ent, axis=-1)

    def tx(self, learning_rate: float):
        return optax.chain(
            optax.clip_by_global_norm(self.max_grad_norm),
            optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, eps=1e-5),
        )

    def _reset(self, key):
        env = self.env
        state = env.initial(key)
        return state, env.observation(state, None)

    # -- public ----------------------------------------------------------------------------
    def init(self, key, hparams=None) -> PPOState:
        """A fresh agent with ``hparams`` (defaults for missing names)."""
        hp = {**default_hparams, **(hparams or {})}
        k_net, k_env = jax.random.split(key)
        obs_dim = self.env.observation_space.shape[0]
        params = self.network.init(k_net, jnp.zeros((obs_dim,), jnp.float32))
        opt_state = self.tx(default_hparams["learning_rate"]).init(params)
        env_state, obs = jax.vmap(self._reset)(jax.random.split(k_env, self.num_envs))
        zeros = jnp.zeros((self.num_envs,), jnp.float32)
        state = PPOState(
            params=params,
            opt_state=opt_state,
            extra=extra_hparams(**{k: default_hparams[k] for k in _EXTRA}),
            env_state=env_state,
            obs=obs.astype(jnp.float32),
            ep_len=jnp.zeros((self.num_envs,), jnp.int32),
            ep_return=zeros,
            last_return=zeros,
            steps=jnp.zeros((), jnp.int32),
            avg_return=zeros,
            episodes=jnp.zeros((self.num_envs,), jnp.int32),
        )
        return set_hparams(state, hp)

    def policy_probs(self, params, obs) -> jax.Array:
        """Action probabilities (for ensembles: average them across members)."""
        logits, _ = self._logits(params, obs)
        return jax.nn.softmax(logits, axis=-1)

    def _rollout(self, state: PPOState, key):
        env = self.env

        def env_step(carry, k):
            st = carry
            k_act, k_reset = jax.random.split(k)
            logits, value = self._logits(st.params, st.obs)
            action = jax.random.categorical(k_act, logits)
            log_prob = self._log_prob(logits, action)
            # CartPole ignores the key; drawing it apart keeps its reset keys unchanged
            k_step = jax.random.split(jax.random.fold_in(k_act, 1), self.num_envs)

            def one(env_state, a, kr, ks):
                nxt = env.transition(env_state, a, ks)
                reward = env.reward(env_state, a, nxt, None)
                term = env.terminal(nxt, None)
                if self.rollout_episodes:  # no reset within a rollout: nothing to compute
                    reset_state, reset_obs = nxt, env.observation(nxt, None)
                else:
                    reset_state, reset_obs = self._reset(kr)
                return nxt, reward, term, reset_state, reset_obs, env.observation(nxt, None)

            nxt, reward, term, reset_state, reset_obs, nxt_obs = jax.vmap(one)(
                st.env_state, action, jax.random.split(k_reset, self.num_envs), k_step
            )
            ep_len = st.ep_len + 1
            trunc = ep_len >= self.max_episode_steps
            done = term | trunc
            ep_return = st.ep_return + reward
            env_state = jax.tree.map(
                lambda r, n: jnp.where(done.reshape(done.shape + (1,) * (n.ndim - 1)), r, n),
                reset_state,
                nxt,
            )
            obs = jnp.where(done[:, None], reset_obs, nxt_obs).astype(jnp.float32)
            new = st._replace(
                env_state=env_state,
                obs=obs,
                ep_len=jnp.where(done, 0, ep_len),
                ep_return=jnp.where(done, 0.0, ep_return),
                last_return=jnp.where(done, ep_return, st.last_return),
                steps=st.steps + self.num_envs,
                avg_return=jnp.where(
                    done, _smoothed(st.avg_return, ep_return, st.episodes), st.avg_return
                ),
                episodes=st.episodes + done.astype(jnp.int32),
            )
            t = Transition(st.obs, action, log_prob, value, reward.astype(jnp.float32), done, term)
            return new, t

        return jax.lax.scan(env_step, state, jax.random.split(key, self.num_steps))

    def _update(self, state: PPOState, key):
        if self.rollout_episodes:  # every environment starts a fresh episode
            env_state, obs = jax.vmap(self._reset)(
                jax.random.split(jax.random.fold_in(key, 2), self.num_envs)
            )
            zeros_i = jnp.zeros((self.num_envs,), jnp.int32)
            state = state._replace(
                env_state=env_state,
                obs=obs.astype(jnp.float32),
                ep_len=zeros_i,
                ep_return=jnp.zeros((self.num_envs,), jnp.float32),
            )
        state, traj = self._rollout(state, key)
        params, opt_state = self.learn(
            state.params, state.opt_state, state.extra.hyperparams, traj, state.obs, key
        )
        return state._replace(params=params, opt_state=opt_state), jnp.mean(traj.reward)

    def learn(self, params, opt_state, hp, traj: Transition, last_obs, key):
        """GAE and ``update_epochs`` of minibatch SGD on one rollout (pure, jittable).

        ``traj`` leaves are ``(num_steps, num_envs, ...)``; ``last_obs`` is the
        observation after the rollout (for bootstrapping).
        """
        _, last_value = self.network.apply(params, last_obs)

        def gae(carry, t):
            adv, next_value = carry
            # a truncated (not terminated) step would bootstrap; approximated by its value
            next_v = jnp.where(t.terminated, 0.0, jnp.where(t.done, t.value, next_value))
            delta = t.reward + hp["gamma"] * next_v - t.value
            adv = delta + hp["gamma"] * hp["gae_lambda"] * jnp.where(t.done, 0.0, adv)
            return (adv, t.value), adv

        _, advantages = jax.lax.scan(
            gae, (jnp.zeros_like(last_value), last_value), traj, reverse=True
        )
        targets = advantages + traj.value
        batch = (traj.obs, traj.action, traj.log_prob, advantages, targets)
        batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
        n = batch[0].shape[0]
        tx = self.tx(default_hparams["learning_rate"])

        def loss_fn(params, mb):
            obs, action, old_logp, adv, target = mb
            logits, value = self._logits(params, obs)
            logp = self._log_prob(logits, action)
            ratio = jnp.exp(logp - old_logp)
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            clipped = jnp.clip(ratio, 1.0 - hp["clip_eps"], 1.0 + hp["clip_eps"])
            actor = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
            critic = 0.5 * jnp.mean((value - target) ** 2)
            entropy = jnp.mean(self._entropy(logits))
            return actor + hp["vf_coef"] * critic - hp["ent_coef"] * entropy

        def epoch(carry, k):
            params, opt_state = carry
            perm = jax.random.permutation(k, n)
            mbs = jax.tree.map(
                lambda x: x[perm].reshape((self.num_minibatches, -1) + x.shape[1:]), batch
            )

            def step(c, mb):
                p, o = c
                grads = jax.grad(loss_fn)(p, mb)
                updates, o = tx.update(grads, o, p)
                return (optax.apply_updates(p, updates), o), None

            return jax.lax.scan(step, (params, opt_state), mbs)[0], None

        keys = jax.random.split(jax.random.fold_in(key, 1), self.update_epochs)
        (params, opt_state), _ = jax.lax.scan(epoch, (params, opt_state), keys)
        return params, opt_state

    def train_window(self, state: PPOState, key) -> tuple[PPOState, dict]:
        """``updates_per_window`` PPO updates; metrics include ``mean_return``."""
        state, _ = jax.lax.scan(self._update, state, jax.random.split(key, self.updates_per_window))
        return state, {"mean_return": jnp.mean(state.last_return)}

    def evaluate(self, state: PPOState) -> dict:
        """``score``: mean return of each environment's last finished episode.

        ``avg_return``: the mean smoothed return (``PPOState.avg_return``, 0 before an
        environment's first episode ends); ``tie_break`` is minus that. The program
        breaks ties of the score with ``tie_break`` (lower wins): at the 500-step cap
        many windows score exactly 500, and the agent that has held the cap over its
        last few episodes is kept rather than the first to touch it once.
        """
        avg = jnp.mean(state.avg_return)
        return {"score": jnp.mean(state.last_return), "avg_return": avg, "tie_break": -avg}
