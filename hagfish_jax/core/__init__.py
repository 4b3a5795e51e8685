"""The functional core: pure, jittable, vmappable pytrees.

Nothing here imports the tasks or the shell (``hagfish_jax.shell``), reads a file or
talks to a network. Every function takes ``key`` first when it needs randomness,
returns new state, and never branches in Python on a traced value.
"""

from . import divergence, ensemble, gp, packing, population, program, snapshot, task, tuners
from .base import KEEP, HParams, Observation, Proposal, Tuner, as_hparams
from .divergence import all_finite, diverged
from .guard import GuardState, guard
from .hparams import ExtraHParams, extra_hparams, get_hparams, set_hparams
from .program import Best, Carry, Program
from .space import Choice, Dimension, IntUniform, LogUniform, Space, Uniform
from .task import Task, restore_only

__all__ = [
    "KEEP",
    "Best",
    "Carry",
    "Choice",
    "Dimension",
    "ExtraHParams",
    "GuardState",
    "HParams",
    "IntUniform",
    "LogUniform",
    "Observation",
    "Program",
    "Proposal",
    "Space",
    "Task",
    "Tuner",
    "Uniform",
    "all_finite",
    "as_hparams",
    "diverged",
    "divergence",
    "ensemble",
    "extra_hparams",
    "get_hparams",
    "gp",
    "guard",
    "packing",
    "population",
    "program",
    "restore_only",
    "set_hparams",
    "snapshot",
    "task",
    "tuners",
]
