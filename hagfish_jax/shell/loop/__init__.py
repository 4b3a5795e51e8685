"""The imperative shell around jitted training: backoff, checkpoints, rollback, callbacks."""

from .backoff import Backoff, Decision, Phase
from .callbacks import Advice, Callback, RecordRun
from .checkpoints import Checkpoints
from .control import Action, MetaController, Regime, RegimeDetector, spawn_noise
from .loop import Loop
from .progress import ProgressBar
from .result import LoopResult
from .stream import Stream

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
    "ProgressBar",
    "RecordRun",
    "Regime",
    "RegimeDetector",
    "Stream",
    "spawn_noise",
]
