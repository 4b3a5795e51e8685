"""The imperative shell around jitted training: backoff, checkpoints, rollback, callbacks."""

from .backoff import Backoff, Decision, Phase
from .checkpoints import Checkpoints

__all__ = ["Backoff", "Checkpoints", "Decision", "Phase"]
