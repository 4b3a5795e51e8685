"""hagfish_jax: JAX-native, functional hyperparameter tuning while models train.

Layers, one folder each: ``core/`` is pure and jittable (spaces, hyperparameters in
optax states, tuners, the guard, snapshots, populations, ensembles, the GP and the
tuned program); ``tasks/`` holds the Task protocol's built-in tasks; ``rl/`` is PPO for
one agent; ``shell/`` is the Python around compiled programs (the Loop, the budget
planner, the demo, records, plots, configs and the command line). ``import
hagfish_jax`` loads the core; the rest loads when first used.

>>> import hagfish_jax as hj
>>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
>>> tuner = hj.guard(hj.finite_difference(space), space=space)
"""

from __future__ import annotations

import importlib
from typing import Any

from .core import (
    base,
    divergence,
    ensemble,
    gp,
    hparams,
    packing,
    population,
    program,
    snapshot,
    space,
    tuners,
)
from .core.base import KEEP, HParams, Observation, Proposal, Tuner, as_hparams
from .core.divergence import all_finite, diverged
from .core.guard import GuardState, guard
from .core.hparams import ExtraHParams, extra_hparams, get_hparams, set_hparams
from .core.program import Best, Carry, Program
from .core.space import Choice, Dimension, IntUniform, LogUniform, Space, Uniform
from .core.task import Task, restore_only
from .core.tuners import (
    BayesState,
    FiniteDifferenceState,
    FixedState,
    PB2State,
    PBTState,
    PlateauState,
    SPSAState,
    bayes,
    finite_difference,
    fixed,
    pb2,
    pbt,
    plateau,
    spsa,
)

__version__ = "0.1.0"

#: Shell names and subpackages, imported on first use: name -> (module, attribute).
_LAZY: dict[str, tuple[str, str | None]] = {
    "AdaptiveTrainer": ("shell.budget", "AdaptiveTrainer"),
    "Advice": ("shell.loop", "Advice"),
    "Backoff": ("shell.loop", "Backoff"),
    "Callback": ("shell.loop", "Callback"),
    "Loop": ("shell.loop", "Loop"),
    "LoopResult": ("shell.loop", "LoopResult"),
    "MetaController": ("shell.loop", "MetaController"),
    "ProgressBar": ("shell.loop", "ProgressBar"),
    "RegimeDetector": ("shell.loop", "RegimeDetector"),
    "Stream": ("shell.loop", "Stream"),
    "TuningConfig": ("shell.config", "TuningConfig"),
    "from_config": ("shell.config", "from_config"),
    "advisors": ("shell.advisors", None),
    "budget": ("shell.budget", None),
    "cli": ("shell.cli", None),
    "compile_cache": ("shell.compile_cache", None),
    "enable_compilation_cache": ("shell.compile_cache", "enable"),
    "unroll_threefry": ("shell.threefry", "unroll"),
    "one_cpu": ("shell._affinity", "one_cpu"),
    "config": ("shell.config", None),
    "demo": ("shell.demo", None),
    "distributed": ("shell.distributed", None),
    "hpo": ("shell.hpo", None),
    "learned": ("control", "learned"),
    "control": ("control", None),
    "loop": ("shell.loop", None),
    "plots": ("shell.plots", None),
    "records": ("shell.records", None),
    "rl": ("rl", None),
    "shell": ("shell", None),
    "tasks": ("tasks", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hagfish_jax' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "KEEP",
    "AdaptiveTrainer",
    "Advice",
    "Backoff",
    "BayesState",
    "Best",
    "Callback",
    "Carry",
    "Choice",
    "Dimension",
    "ExtraHParams",
    "FiniteDifferenceState",
    "FixedState",
    "GuardState",
    "HParams",
    "IntUniform",
    "LogUniform",
    "Loop",
    "LoopResult",
    "MetaController",
    "Observation",
    "PB2State",
    "PBTState",
    "PlateauState",
    "Program",
    "ProgressBar",
    "Proposal",
    "RegimeDetector",
    "SPSAState",
    "Space",
    "Stream",
    "Task",
    "Tuner",
    "TuningConfig",
    "Uniform",
    "all_finite",
    "as_hparams",
    "advisors",
    "base",
    "bayes",
    "budget",
    "cli",
    "compile_cache",
    "config",
    "control",
    "demo",
    "distributed",
    "diverged",
    "divergence",
    "enable_compilation_cache",
    "ensemble",
    "extra_hparams",
    "hpo",
    "learned",
    "finite_difference",
    "fixed",
    "from_config",
    "get_hparams",
    "gp",
    "guard",
    "hparams",
    "loop",
    "one_cpu",
    "packing",
    "pb2",
    "pbt",
    "plateau",
    "plots",
    "population",
    "program",
    "records",
    "restore_only",
    "rl",
    "set_hparams",
    "shell",
    "snapshot",
    "space",
    "spsa",
    "tasks",
    "tuners",
    "unroll_threefry",
]
