"""Rule-based population control: the meta-controller, regime detection, spawn noise.

Pure Python over score histories. The loop consults them when a run goes DORMANT.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["Action", "MetaController", "Regime", "RegimeDetector", "spawn_noise"]


class Action(str, enum.Enum):
    STOP = "STOP"
    PRUNE = "PRUNE"
    SPAWN = "SPAWN"
    NO_OP = "NO_OP"


class Regime(str, enum.Enum):
    TRENDING = "trending"
    RANGING = "ranging"
    VOLATILE = "volatile"


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope per evaluation, normalised by the values' spread."""
    y = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if len(y) < 2:
        return 0.0
    x = np.arange(len(y), dtype=np.float64)
    slope = np.polyfit(x, y, 1)[0]
    scale = np.std(y) or max(abs(float(np.mean(y))), 1e-12)
    return float(slope * len(y) / scale)


@dataclasses.dataclass(frozen=True)
class MetaController:
    """STOP > PRUNE > SPAWN > NO_OP, from budget, generalisation gap and slope.

    * STOP: the spawn budget is spent (``spawns_used >= max_spawns``).
    * PRUNE: the train-validation gap is above ``gap_threshold`` (relative to
      ``|train|``), or the gap has been widening (its normalised slope above
      ``gap_slope``).
    * SPAWN: the validation score's normalised slope is flat (``|slope| <= flat``).
    * NO_OP: fewer than 3 evaluations, or still healthy (improving).
    """

    max_spawns: int = 3
    gap_threshold: float = 0.1
    gap_slope: float = 1.0
    flat: float = 0.5

    def decide(
        self,
        val_scores: Sequence[float],
        train_scores: Sequence[float] | None = None,
        spawns_used: int = 0,
    ) -> Action:
        if spawns_used >= self.max_spawns:
            return Action.STOP
        if len(val_scores) < 3:
            return Action.NO_OP
        if train_scores is not None and len(train_scores) == len(val_scores):
            gaps = [t - v for t, v in zip(train_scores, val_scores)]
            last_train = train_scores[-1]
            rel_gap = gaps[-1] / max(abs(last_train), 1e-12)
            if (math.isfinite(rel_gap) and rel_gap > self.gap_threshold) or _slope(
                gaps
            ) > self.gap_slope:
                return Action.PRUNE
        if abs(_slope(val_scores[-10:])) <= self.flat:
            return Action.SPAWN
        return Action.NO_OP


@dataclasses.dataclass(frozen=True)
class RegimeDetector:
    """Classify a score history as trending, ranging or volatile.

    ``volatile``: the step-to-step changes are large compared with the net move
    (efficiency ratio below ``efficiency`` and relative spread above
    ``volatility``); ``trending``: the net move explains most of the path
    (efficiency at least ``efficiency``); otherwise ``ranging``.
    """

    window: int = 10
    efficiency: float = 0.5
    volatility: float = 0.05

    def classify(self, scores: Sequence[float]) -> Regime:
        y = np.asarray([s for s in scores if math.isfinite(s)][-self.window :], np.float64)
        if len(y) < 3:
            return Regime.RANGING
        path = float(np.sum(np.abs(np.diff(y))))
        net = abs(float(y[-1] - y[0]))
        eff = net / path if path > 0 else 0.0
        if eff >= self.efficiency:
            return Regime.TRENDING
        spread = float(np.std(np.diff(y))) / max(float(np.mean(np.abs(y))), 1e-12)
        return Regime.VOLATILE if spread > self.volatility else Regime.RANGING


def spawn_noise(
    val_slope: float,
    gap: float,
    correlation: float,
    base: float = 0.1,
    low: float = 0.02,
    high: float = 0.5,
) -> float:
    """Relative hyperparameter noise for a spawned variant, from three signals.

    More noise when validation has stalled (small ``|val_slope|``), when the
    train-validation ``gap`` (relative) is large, and when train and validation
    scores stop moving together (low ``correlation`` in [-1, 1]). Always within
    ``[low, high]``; monotone in each signal.
    """
    stall = 1.0 / (1.0 + abs(val_slope))  # 1 when flat, -> 0 when moving fast
    gap_term = min(max(gap, 0.0), 1.0)
    decorrelation = (1.0 - max(min(correlation, 1.0), -1.0)) / 2.0  # 0 .. 1
    noise = base * (1.0 + stall + 2.0 * gap_term + decorrelation)
    return float(min(max(noise, low), high))
