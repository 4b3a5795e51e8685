"""hagfish_jax: JAX-native, functional hyperparameter tuning while models train.

>>> import hagfish_jax as hj
>>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
>>> tuner = hj.guard(hj.finite_difference(space), space=space)
"""

from . import budget, ensemble, gp, loop, population, records, rl, snapshot
from .base import KEEP, HParams, Observation, Proposal, Tuner, as_hparams
from .budget import AdaptiveTrainer
from .config import TuningConfig, from_config
from .guard import GuardState, guard
from .hparams import ExtraHParams, extra_hparams, get_hparams, set_hparams
from .loop import Advice, Backoff, Callback, Loop, LoopResult, MetaController, RegimeDetector
from .space import Choice, Dimension, IntUniform, LogUniform, Space, Uniform
from .tuners import (
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

__all__ = [
    "KEEP",
    "AdaptiveTrainer",
    "Advice",
    "Backoff",
    "Callback",
    "Loop",
    "LoopResult",
    "MetaController",
    "RegimeDetector",
    "BayesState",
    "Choice",
    "Dimension",
    "ExtraHParams",
    "FiniteDifferenceState",
    "FixedState",
    "PB2State",
    "PBTState",
    "GuardState",
    "HParams",
    "IntUniform",
    "LogUniform",
    "Observation",
    "PlateauState",
    "Proposal",
    "SPSAState",
    "Space",
    "Tuner",
    "TuningConfig",
    "Uniform",
    "as_hparams",
    "bayes",
    "budget",
    "ensemble",
    "extra_hparams",
    "finite_difference",
    "fixed",
    "from_config",
    "gp",
    "pb2",
    "pbt",
    "get_hparams",
    "guard",
    "loop",
    "plateau",
    "population",
    "records",
    "rl",
    "set_hparams",
    "snapshot",
    "spsa",
]
