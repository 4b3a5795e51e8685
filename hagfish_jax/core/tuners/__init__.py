"""Tuner factories. Each returns a :class:`hagfish_jax.Tuner`."""

from .bayes import BayesState, bayes
from .finite_difference import FiniteDifferenceState, finite_difference
from .fixed import FixedState, fixed
from .pb2 import PB2State, pb2
from .pbt import PBTState, pbt, truncation_size
from .plateau import PlateauState, plateau
from .spsa import SPSAState, spsa

__all__ = [
    "BayesState",
    "FiniteDifferenceState",
    "FixedState",
    "PB2State",
    "PBTState",
    "PlateauState",
    "SPSAState",
    "bayes",
    "finite_difference",
    "fixed",
    "pb2",
    "pbt",
    "plateau",
    "spsa",
    "truncation_size",
]
