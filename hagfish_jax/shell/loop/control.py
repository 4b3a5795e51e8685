"""Rule-based population control: the meta-controller, regime detection, spawn noise.

Pure Python over score histories. The loop consults them when a run goes DORMANT.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

import numpy as np

from ...core._checks import integer

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


def _spread(values: Sequence[float]) -> float:
    """A scale for score changes: the spread of the finite values, at least a
    millionth of their size (so rounding never divides by ~0)."""
    y = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if len(y) == 0:
        return 1e-12
    return max(float(np.std(y)), 1e-6 * float(np.max(np.abs(y))), 1e-12)


def _slope(values: Sequence[float], scale: float | None = None) -> float:
    """Least-squares slope per evaluation times the count, over ``scale`` (default the
    values' own :func:`_spread`)."""
    y = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if len(y) < 2:
        return 0.0
    x = np.arange(len(y), dtype=np.float64)
    slope = np.polyfit(x, y, 1)[0]
    scale = _spread(y) if scale is None else scale
    return float(slope * len(y) / scale)


@dataclasses.dataclass(frozen=True)
class MetaController:
    """STOP > PRUNE > SPAWN > NO_OP, from budget, generalisation gap and slope.

    * STOP: the spawn budget is spent (``spawns_used >= max_spawns``).
    * PRUNE: the train-validation gap is above ``gap_threshold`` (relative to
      ``|train|``), or the gap has been widening (its normalised slope above
      ``gap_slope``).
    * SPAWN: the validation score's normalised slope is flat or falling
      (``slope <= flat``): a restart from the best state with noise.
    * NO_OP: fewer than 3 evaluations, or still healthy (improving).

    Args:
      max_spawns: spawns allowed before STOP (an integer >= 0).
      gap_threshold: relative train-validation gap that calls for PRUNE.
      gap_slope: normalised slope of the gap that calls for PRUNE.
      flat: largest ``|slope|`` of the validation score counted as flat.

    Raises:
      ValueError: ``max_spawns`` is not an integer >= 0.

    >>> from hagfish_jax.shell.loop import MetaController
    >>> mc = MetaController(max_spawns=2)
    >>> mc.decide([0.5, 0.5, 0.5]).value  # flat validation score
    'SPAWN'
    >>> mc.decide([0.5, 0.5, 0.5], train_scores=[0.9, 0.9, 0.9]).value  # overfitting
    'PRUNE'
    >>> mc.decide([0.1, 0.3, 0.6]).value, mc.decide([0.9, 0.6, 0.3, 0.1]).value  # up, down
    ('NO_OP', 'SPAWN')
    >>> mc.decide([0.5, 0.5, 0.5], spawns_used=2).value
    'STOP'
    """

    max_spawns: int = 3
    gap_threshold: float = 0.1
    gap_slope: float = 1.0
    flat: float = 0.5

    def __post_init__(self) -> None:
        max_spawns = integer("MetaController: max_spawns", self.max_spawns, 0)
        object.__setattr__(self, "max_spawns", max_spawns)

    def decide(
        self,
        val_scores: Sequence[float],
        train_scores: Sequence[float] | None = None,
        spawns_used: int = 0,
    ) -> Action:
        """The action for a run (or population) with these score histories.

        Args:
          val_scores: validation scores, oldest first (higher is better).
          train_scores: the matching training scores, or ``None``.
          spawns_used: spawns made so far (an integer >= 0).

        Returns:
          An :class:`Action`.

        Raises:
          ValueError: ``spawns_used`` is not an integer >= 0.
        """
        spawns_used = integer("MetaController.decide: spawns_used", spawns_used, 0)
        if spawns_used >= self.max_spawns:
            return Action.STOP
        if len(val_scores) < 3:
            return Action.NO_OP
        if train_scores is not None and len(train_scores) == len(val_scores):
            gaps = [t - v for t, v in zip(train_scores, val_scores)]
            last_train = train_scores[-1]
            rel_gap = gaps[-1] / max(abs(last_train), 1e-12)
            # the gap's trend in units of the scores' own spread: a constant gap (whose
            # rounding noise has no spread of its own) never reads as widening
            scale = _spread(list(val_scores) + list(train_scores))
            widening = _slope(gaps, scale) > self.gap_slope
            if (math.isfinite(rel_gap) and rel_gap > self.gap_threshold) or widening:
                return Action.PRUNE
        if _slope(val_scores[-10:]) <= self.flat:  # flat, or declining: restart from the best
            return Action.SPAWN
        return Action.NO_OP


@dataclasses.dataclass(frozen=True)
class RegimeDetector:
    """Classify a score history as trending, ranging or volatile.

    ``volatile``: the step-to-step changes are large compared with the net move
    (efficiency ratio below ``efficiency`` and relative spread above
    ``volatility``); ``trending``: the net move explains most of the path
    (efficiency at least ``efficiency``); otherwise ``ranging``.

    Args:
      window: how many recent finite scores are classified (an integer >= 3:
        fewer always read as ranging).
      efficiency: net move over path length at or above which it is trending.
      volatility: spread of the steps (relative to the scores) above which a
        non-trending history is volatile.

    Raises:
      ValueError: ``window`` is not an integer >= 3.

    >>> from hagfish_jax.shell.loop import RegimeDetector
    >>> rd = RegimeDetector(window=5)
    >>> rd.classify([0.1, 0.2, 0.3, 0.4]).value
    'trending'
    >>> rd.classify([0.5, 0.9, 0.4, 0.95, 0.45]).value
    'volatile'
    >>> rd.classify([0.5, 0.51, 0.5, 0.51, 0.5]).value
    'ranging'
    """

    window: int = 10
    efficiency: float = 0.5
    volatility: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", integer("RegimeDetector: window", self.window, 3))

    def classify(self, scores: Sequence[float]) -> Regime:
        """The regime of the last ``window`` finite scores (fewer than 3: ranging)."""
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

    The rule: ``base * (1 + stall + 2 * gap + decorrelation)`` clipped to ``[low,
    high]``, where ``stall = 1 / (1 + max(val_slope, 0))`` is 1 on a plateau or a
    decline and falls towards 0 as the validation score improves faster, ``gap`` is
    clipped to [0, 1] and ``decorrelation = (1 - correlation) / 2``. So a plateau or
    a decline gets the most exploration and an improving run the least; the noise
    never rises with ``val_slope`` or ``correlation`` and never falls with ``gap``.

    Args:
      val_slope: normalised slope of the validation score (NaN: read as 0).
      gap: relative train-validation gap (clipped to [0, 1]; NaN: read as 0).
      correlation: correlation of train and validation scores (clipped to [-1, 1];
        NaN: read as 1).
      base: the noise scale before the three signals.
      low, high: the bounds of the result.

    Returns:
      The relative noise, a float in ``[low, high]``.

    >>> from hagfish_jax.shell.loop import spawn_noise
    >>> spawn_noise(val_slope=0.0, gap=0.0, correlation=1.0)  # stalled, healthy
    0.2
    >>> spawn_noise(val_slope=0.0, gap=1.0, correlation=-1.0)  # overfitting: capped
    0.5
    >>> spawn_noise(val_slope=10.0, gap=0.0, correlation=1.0) < 0.2  # still improving
    True
    >>> spawn_noise(val_slope=-10.0, gap=0.0, correlation=1.0)  # declining: as a plateau
    0.2
    """
    # an unknown signal (NaN: a diverged window in the history) counts as neutral
    val_slope = val_slope if math.isfinite(val_slope) else 0.0
    gap = gap if math.isfinite(gap) else 0.0
    correlation = correlation if math.isfinite(correlation) else 1.0
    stall = 1.0 / (1.0 + max(val_slope, 0.0))  # 1 flat or falling, -> 0 rising fast
    gap_term = min(max(gap, 0.0), 1.0)
    decorrelation = (1.0 - max(min(correlation, 1.0), -1.0)) / 2.0  # 0 .. 1
    noise = base * (1.0 + stall + 2.0 * gap_term + decorrelation)
    return float(min(max(noise, low), high))
