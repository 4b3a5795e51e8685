"""A learned hyperparameter controller (reference 003), all in JAX.

* :mod:`.masked`, :mod:`.tasks`: tasks whose batch size, width and depth change inside
  jit (masks over the largest setting), on one data set or a bank of them;
* :mod:`.env`: hyperparameter control as a functional gymnasium environment;
* :mod:`.meta`: PPO (:class:`hagfish_jax.rl.PPO`) over hundreds of vmapped inner runs;
* :mod:`.controller`: the trained policy, saved with orbax and resumable;
* :mod:`.tuner`: :func:`learned`, a trained controller as a tuner;
* :mod:`.suite`: held-out tasks per modality and a side-by-side evaluation.

The names below load on first use, so the ``hagfish`` command starts without them.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Held-out task names of :func:`hagfish_jax.control.suite.eval_task`.
EVAL_TASKS = ("image", "text", "tabular", "wine", "digits", "synthetic")

#: The family of :func:`hagfish_jax.control.data.training_splits` whose data each
#: eval task uses (``None``: no family's). A controller meta-trained on that family
#: has seen the task's rows, so ``hagfish controller eval`` refuses the task, and
#: ``hagfish controller train`` holds these families out by default. (The
#: ``synthetic`` eval task is a generated task of its own, not one of the bank's.)
EVAL_FAMILIES = {
    "image": "digits",
    "text": None,
    "tabular": "breast_cancer",
    "wine": "wine",
    "digits": "digits",
    "synthetic": None,
}

_LAZY = {
    "ControlledTask": "tasks",
    "Controller": "controller",
    "EnvState": "env",
    "HParamEnv": "env",
    "LearnedState": "tuner",
    "MetaConfig": "meta",
    "MetaResult": "meta",
    "Spec": "controller",
    "default_hparams": "tasks",
    "gym_env": "env",
    "learned": "tuner",
    "load": "controller",
    "make_task": "tasks",
    "meta_train": "meta",
    "space": "tasks",
}

__all__ = ["EVAL_FAMILIES", "EVAL_TASKS", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
