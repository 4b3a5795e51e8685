"""A learned hyperparameter controller (reference 003), all in JAX.

* :mod:`.masked`, :mod:`.tasks`: tasks whose batch size, width and depth change inside
  jit (masks over the largest setting), on one data set or a bank of them;
* :mod:`.env`: hyperparameter control as a functional gymnasium environment;
* :mod:`.meta`: PPO (:class:`hagfish_jax.rl.PPO`) over hundreds of vmapped inner runs;
* :mod:`.controller`: the trained policy, saved with orbax and resumable;
* :mod:`.tuner`: :func:`learned`, a trained controller as a tuner.
"""

from .controller import Controller, Spec, load
from .env import EnvState, HParamEnv, gym_env
from .meta import MetaConfig, MetaResult, meta_train
from .tasks import ControlledTask, default_hparams, make_task, space
from .tuner import LearnedState, learned

__all__ = [
    "ControlledTask",
    "Controller",
    "EnvState",
    "HParamEnv",
    "LearnedState",
    "MetaConfig",
    "MetaResult",
    "Spec",
    "default_hparams",
    "gym_env",
    "learned",
    "load",
    "make_task",
    "meta_train",
    "space",
]
