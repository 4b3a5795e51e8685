"""The imperative shell around jitted training: backoff, checkpoints, rollback, callbacks."""

from .backoff import Backoff, Decision, Phase

__all__ = ["Backoff", "Decision", "Phase"]
