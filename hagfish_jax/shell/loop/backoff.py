"""The evaluation-backoff state machine: ACTIVE -> COOLING -> DORMANT (-> WATCHDOG).

Pure Python, between jitted calls. It decides *when* to evaluate and what the
evaluations mean:

* **ACTIVE**: evaluate every ``base`` windows while the score improves. Each
  evaluation without improvement multiplies the interval by ``backoff`` (up to
  ``max_interval``), in ACTIVE and COOLING alike; an improvement brings back ``base``.
* **COOLING**: ``plateau`` evaluations in a row without improvement; an improvement
  returns to ACTIVE.
* **DORMANT**: ``dormant`` evaluations without improvement (and at least
  ``min_windows`` windows): converged. The loop stops, or spawns a variant; on live
  data it goes on, and an improvement (or a rollback) returns to ACTIVE.
* **WATCHDOG**: in continuous mode, after DORMANT: evaluate at ``max_interval`` and
  watch for degradation.

Improvement is credited only beyond a noise floor, ``noise`` times the noise level
of the last ``noise_window`` scores (the spread of their successive differences, so
a trend is not counted as noise); multiplying every score by a positive constant
gives the same sequence of states. Degradation is
``patience`` evaluations in a row below ``best - max(|best| * (1 - degradation),
noise floor)``, which is right for negative scores too; NaN/inf scores count as
degraded and never improve.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque

__all__ = ["Backoff", "Decision", "Phase"]


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])


class Phase(str, enum.Enum):
    ACTIVE = "ACTIVE"
    COOLING = "COOLING"
    DORMANT = "DORMANT"
    WATCHDOG = "WATCHDOG"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What one evaluation meant.

    Attributes:
      phase: the state after this evaluation.
      improved: the score beat the best by more than the noise floor.
      degraded: ``patience`` bad evaluations in a row: roll back to the best.
      transition: the phase changed (``(old, new)``), else ``None``.
      next_window: the window at which to evaluate next.
      noise_floor: the floor used for this evaluation.
    """

    phase: Phase
    improved: bool
    degraded: bool
    transition: tuple[Phase, Phase] | None
    next_window: int
    noise_floor: float


class Backoff:
    """The backoff state machine.

    Args:
      base: evaluation interval (windows) while ACTIVE, >= 1.
      backoff: interval multiplier per non-improving evaluation, >= 1.
      max_interval: the longest interval, >= base.
      plateau: non-improving evaluations before COOLING, >= 1.
      dormant: non-improving evaluations before DORMANT, >= plateau.
      min_windows: DORMANT never comes before this many windows.
      noise: the noise floor is ``noise`` times the recent spread, >= 0.
      noise_window: how many recent scores the spread uses, >= 2.
      degradation: in (0, 1]; a score below ``best - |best| * (1 - degradation)``
        (and below the noise floor) is bad.
      patience: bad evaluations in a row that confirm degradation, >= 1.
      continuous: after DORMANT, go on in WATCHDOG instead of stopping.

    >>> from hagfish_jax.shell.loop import Backoff
    >>> b = Backoff(plateau=2, dormant=3)
    >>> [b.observe(w, s).phase.value for w, s in enumerate([1.0, 2.0, 2.0, 2.0, 2.0])]
    ['ACTIVE', 'ACTIVE', 'ACTIVE', 'COOLING', 'DORMANT']
    """

    def __init__(
        self,
        base: int = 1,
        backoff: float = 2.0,
        max_interval: int = 100,
        plateau: int = 5,
        dormant: int = 20,
        min_windows: int = 0,
        noise: float = 1.0,
        noise_window: int = 10,
        degradation: float = 0.95,
        patience: int = 2,
        continuous: bool = False,
    ):
        def need_int(name, value, minimum):
            if isinstance(value, bool) or int(value) != value or value < minimum:
                raise ValueError(f"Backoff: {name} must be an integer >= {minimum}, got {value!r}")
            return int(value)

        self.base = need_int("base", base, 1)
        self.max_interval = need_int("max_interval", max_interval, self.base)
        self.plateau = need_int("plateau", plateau, 1)
        self.dormant = need_int("dormant", dormant, self.plateau)
        self.min_windows = need_int("min_windows", min_windows, 0)
        self.noise_window = need_int("noise_window", noise_window, 2)
        self.patience = need_int("patience", patience, 1)
        if not (backoff >= 1.0 and math.isfinite(backoff)):
            raise ValueError(f"Backoff: backoff must be >= 1, got {backoff!r}")
        if not (noise >= 0.0 and math.isfinite(noise)):
            raise ValueError(f"Backoff: noise must be >= 0, got {noise!r}")
        if not 0.0 < degradation <= 1.0:
            raise ValueError(f"Backoff: degradation must be in (0, 1], got {degradation!r}")
        self.backoff = float(backoff)
        self.noise = float(noise)
        self.degradation = float(degradation)
        self.continuous = bool(continuous)
        self.reset()

    def reset(self) -> None:
        """Back to ACTIVE with no history."""
        self.phase = Phase.ACTIVE
        self.interval = float(self.base)
        self.best = -math.inf
        self.stale = 0
        self.bad = 0
        self.evaluations = 0
        self.next_window = 0
        self.recent: deque[float] = deque(maxlen=self.noise_window)

    # -- helpers -----------------------------------------------------------------------
    def noise_floor(self) -> float:
        """``noise`` times the noise level of the recent finite scores.

        The level is the spread of successive differences over ``sqrt(2)``: for a
        trend plus independent noise it estimates the noise alone, so a steadily
        improving run is not mistaken for a noisy one. From 5 differences on, the
        spread is the median absolute deviation (x 1.4826: the standard deviation for
        Gaussian noise), so one outlier cannot lift the floor above a rising trend;
        with fewer it is the standard deviation.
        """
        if len(self.recent) < 3:
            return 0.0
        r = list(self.recent)
        diffs = sorted(b - a for a, b in zip(r, r[1:]))
        if len(diffs) >= 5:
            median = _median(diffs)
            spread = 1.4826 * _median(sorted(abs(d - median) for d in diffs))
        else:
            mean = sum(diffs) / len(diffs)
            spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
        return self.noise * spread / math.sqrt(2.0)

    def due(self, window: int) -> bool:
        """Whether the loop should evaluate after ``window``."""
        return self.phase is not Phase.DORMANT and window >= self.next_window

    @property
    def done(self) -> bool:
        return self.phase is Phase.DORMANT

    def state_dict(self) -> dict:
        """Everything needed to resume (JSON-serialisable)."""
        return {
            "phase": self.phase.value,
            "interval": self.interval,
            "best": self.best if math.isfinite(self.best) else None,
            "stale": self.stale,
            "bad": self.bad,
            "evaluations": self.evaluations,
            "next_window": self.next_window,
            "recent": list(self.recent),
        }

    def load_state_dict(self, d: dict) -> None:
        self.phase = Phase(d["phase"])
        self.interval = float(d["interval"])
        self.best = -math.inf if d["best"] is None else float(d["best"])
        self.stale, self.bad = int(d["stale"]), int(d["bad"])
        self.evaluations, self.next_window = int(d["evaluations"]), int(d["next_window"])
        self.recent = deque((float(x) for x in d["recent"]), maxlen=self.noise_window)

    # -- the machine -------------------------------------------------------------------
    def reactivate(self, window: int) -> None:
        """Back to ACTIVE after a rollback: the run restarts from its best state, so it
        is evaluated at the base interval again (the best score is kept)."""
        self.phase = Phase.ACTIVE  # a stream goes on past DORMANT: it wakes up too
        self.interval = float(self.base)
        self.stale = 0
        self.bad = 0
        self.next_window = window + self.base

    def observe(self, window: int, score: float, explore: bool = False) -> Decision:
        """Feed the score evaluated after ``window``; returns what it means.

        ``explore``: the window tried a tuner's trial value (``Proposal.explore``): it
        may still improve on the best, but a bad score there is the trial's, not the
        run's, and never counts towards a degradation.
        """
        score = float(score)
        finite = math.isfinite(score)
        floor = self.noise_floor()
        old = self.phase
        self.evaluations += 1
        has_best = math.isfinite(self.best)
        improved = finite and (not has_best or score > self.best + floor)
        margin = max(abs(self.best) * (1.0 - self.degradation), floor) if has_best else 0.0
        bad = not finite or (has_best and score < self.best - margin)
        if finite:
            self.recent.append(score)
            if score > self.best:
                self.best = score  # track the peak even inside the noise

        if not explore:
            self.bad = self.bad + 1 if bad else 0
        degraded = self.bad >= self.patience
        if degraded:
            self.bad = 0

        if improved:
            self.stale = 0
            self.interval = float(self.base)
            if self.phase in (Phase.COOLING, Phase.WATCHDOG, Phase.DORMANT):
                self.phase = Phase.ACTIVE  # (DORMANT on live data, which goes on)
        else:
            self.stale += 1
            self.interval = min(self.interval * self.backoff, float(self.max_interval))
            if self.phase is Phase.ACTIVE and self.stale >= self.plateau:
                self.phase = Phase.COOLING
            if (
                self.phase is Phase.COOLING
                and self.stale >= self.dormant
                and window + 1 >= self.min_windows
            ):
                self.phase = Phase.WATCHDOG if self.continuous else Phase.DORMANT
        if self.phase is Phase.WATCHDOG:
            self.interval = float(self.max_interval)
        self.next_window = window + max(1, int(round(self.interval)))
        transition = (old, self.phase) if self.phase is not old else None
        return Decision(self.phase, improved, degraded, transition, self.next_window, floor)
