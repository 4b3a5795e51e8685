"""CartPole as a :class:`hagfish_jax.Task`: PPO agents on gymnasium's functional CartPole.

The agent is :class:`hagfish_jax.rl.PPO` (written for one agent; the tuned program
vmaps it over a population). A window is ``updates_per_window`` PPO updates; the
score is the mean return of each environment's last finished episode; the cost of a
window is the environment steps it takes.
"""

from __future__ import annotations

from ..core.task import Task, restore_only
from ..rl.ppo import PPO, default_hparams, space

__all__ = ["make_task"]


def make_task(ppo: PPO | None = None, seed: int = 0) -> Task:
    """The CartPole task of ``ppo`` (default ``PPO()``); ``seed`` is unused (the
    environment has no data split) and accepted for a uniform registry.

    >>> import jax
    >>> from hagfish_jax.rl import PPO
    >>> task = make_task(PPO(num_envs=4, num_steps=16, updates_per_window=1))
    >>> state = task.init(jax.random.key(0), task.default_hparams)
    >>> state, _ = jax.jit(task.train_window)(state, jax.random.key(1))
    >>> task.window_cost, sorted(task.evaluate(state))
    (64.0, ['avg_return', 'score', 'tie_break'])
    """
    ppo = PPO() if ppo is None else ppo
    return Task(
        init=ppo.init,
        train_window=ppo.train_window,
        evaluate=ppo.evaluate,
        space=space,
        default_hparams=dict(default_hparams),
        name="cartpole",
        predict=ppo.policy_probs,
        # a rollback restores the agent; the environments and step count go on
        restore=restore_only("params", "opt_state", "extra"),
        window_cost=float(ppo.updates_per_window * ppo.num_envs * ppo.num_steps),
        cost_unit="environment steps",
        score_name="return",
        target=475.0,
        data=ppo,
    )
