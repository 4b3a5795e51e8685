"""The imperative shell around jitted training: backoff, checkpoints, rollback, callbacks."""

from .backoff import Backoff, Decision, Phase
from .checkpoints import Checkpoints
from .control import Action, MetaController, Regime, RegimeDetector, spawn_noise
from .loop import Advice, Callback, Loop, LoopResult, RecordRun

__all__ = [
    "Action",
    "Advice",
    "Backoff",
    "Callback",
    "Checkpoints",
    "Decision",
    "Loop",
    "LoopResult",
    "MetaController",
    "Phase",
    "RecordRun",
    "Regime",
    "RegimeDetector",
    "spawn_noise",
]
