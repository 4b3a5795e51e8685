"""The critic and the memory of the budget planner: outcomes, labels, the elite."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "DEFAULT_BOUNDS",
    "LABELS",
    "Critic",
    "Memory",
    "Outcome",
    "best_by_metric",
    "default_cost",
]

#: Budget keys and their inclusive integer bounds by default.
DEFAULT_BOUNDS: dict[str, tuple[int, int]] = {
    "batch_size": (8, 256),
    "epochs": (5, 200),
    "width": (8, 256),
}
#: The critic's labels.
LABELS = ("improvement", "saturation", "stagnation")
_CONTEXT_KEYS = ("dataset_size",)


def default_cost(params: Mapping[str, int]) -> float:
    """Batch size x epochs (keys that are absent count as 1), the built-in tasks' cost."""
    return float(params.get("batch_size", 1) * params.get("epochs", 1))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One observed run: its budget, metric, cost, reward and the critic's label."""

    params: dict[str, int]
    metric: float
    cost: float
    reward: float
    label: str


def best_by_metric(outcomes: list[Outcome]) -> Outcome | None:
    """The outcome with the highest finite metric (the cheaper one on a tie)."""
    finite = [o for o in outcomes if math.isfinite(o.metric)]
    return max(finite, key=lambda o: (o.metric, -o.cost), default=None)


class Critic:
    """Labels outcomes; see the module docstring for the thresholds.

    Args:
      rel_tol: the share of the metric's scale an improvement must exceed.
    """

    def __init__(self, rel_tol: float = 0.005) -> None:
        if not (isinstance(rel_tol, (int, float)) and 0.0 <= rel_tol < 1.0):
            raise ValueError(f"Critic: rel_tol must be in [0, 1), got {rel_tol!r}")
        self.rel_tol = float(rel_tol)

    @staticmethod
    def scale(metrics: list[float]) -> float:
        """``max(|best|, max - min)`` of the finite metrics (1e-12 if all are 0)."""
        finite = [m for m in metrics if math.isfinite(m)]
        if not finite:
            return 1e-12
        return max(abs(max(finite)), max(finite) - min(finite), 1e-12)

    def label(self, metric: float, cost: float, history: list[Outcome]) -> str:
        """The label of ``(metric, cost)`` given the outcomes before it."""
        if not math.isfinite(metric):
            return "stagnation"
        best = best_by_metric(history)
        if best is None:
            return "improvement"
        tol = self.rel_tol * self.scale([o.metric for o in history])
        if metric > best.metric + tol:
            return "improvement"
        return "saturation" if cost >= best.cost else "stagnation"


class Memory:
    """Every outcome, the elite, penalised budgets and whether escalation has paid.

    Args:
      neighbourhood: two budgets are neighbours when every key is within this factor.
    """

    def __init__(self, neighbourhood: float = 1.5) -> None:
        if not neighbourhood > 1.0:
            raise ValueError(f"Memory: neighbourhood must be > 1, got {neighbourhood!r}")
        self.neighbourhood = float(neighbourhood)
        self.outcomes: list[Outcome] = []
        self.penalised: list[dict[str, int]] = []
        self.escalation_paid = False
        self.escalations = 0
        self.rounds_since_elite = 0
        self._round: list[bool] | None = None

    @property
    def elite(self) -> Outcome | None:
        """The outcome with the highest finite reward (the cheaper one on a tie)."""
        finite = [o for o in self.outcomes if math.isfinite(o.reward)]
        return max(finite, key=lambda o: (o.reward, -o.cost), default=None)

    def near(self, a: Mapping[str, float], b: Mapping[str, float]) -> bool:
        """Whether ``a`` and ``b`` are neighbours (every shared key within the factor)."""
        limit = math.log(self.neighbourhood) + 1e-9
        return all(abs(math.log(a[k] / b[k])) <= limit for k in a if k in b)

    def add(self, outcome: Outcome, tol: float = 0.0) -> None:
        """Remember ``outcome``. The elite counts as improved (resetting
        ``rounds_since_elite``, behind ``AdaptiveTrainer.done``) only when its reward rises
        by more than ``tol``: a run of tiny gains still ends in ``done``."""
        best = best_by_metric(self.outcomes)
        if best is not None:
            if outcome.cost > best.cost:
                self.escalations += 1
                if outcome.label == "improvement":
                    self.escalation_paid = True
        if outcome.label == "saturation" or not math.isfinite(outcome.metric):
            # a saturated budget, or one that failed (-inf): not planned again, nor
            # its neighbours
            self.penalised.append(dict(outcome.params))
        before = self.elite
        self.outcomes.append(outcome)
        after = self.elite
        improved = before is None and after is not None
        if before is not None and after is not before:
            improved = after.reward > before.reward + tol
        if self._round is not None:  # one round of several outcomes: counted at its end
            self._round.append(improved)
        else:
            self.rounds_since_elite = 0 if improved else self.rounds_since_elite + 1

    @contextlib.contextmanager
    def one_round(self) -> Iterator[None]:
        """The outcomes added inside count as one round for ``rounds_since_elite`` (a
        round of successive halving observes every trial of its rungs)."""
        if self._round is not None:
            raise RuntimeError("Memory.one_round: a round is already open")
        self._round = []
        try:
            yield
        finally:
            flags, self._round = self._round, None
            if flags:
                self.rounds_since_elite = 0 if any(flags) else self.rounds_since_elite + 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes],
            "penalised": list(self.penalised),
            "escalation_paid": self.escalation_paid,
            "escalations": self.escalations,
            "rounds_since_elite": self.rounds_since_elite,
        }


def _check_bounds(bounds: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    if not isinstance(bounds, Mapping) or not bounds:
        raise ValueError(f"AdaptiveTrainer: bounds must be a non-empty mapping, got {bounds!r}")
    out = {}
    for key, pair in bounds.items():
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise ValueError(
                f"AdaptiveTrainer: bounds[{key!r}] must be (low, high), got {pair!r}"
            ) from None
        for v in (lo, hi):
            if isinstance(v, bool) or not float(v).is_integer():
                raise ValueError(f"AdaptiveTrainer: bounds[{key!r}] must be integers, got {pair!r}")
        if not 1 <= int(lo) <= int(hi):
            raise ValueError(
                f"AdaptiveTrainer: bounds[{key!r}] needs 1 <= low <= high, got {pair!r}"
            )
        out[str(key)] = (int(lo), int(hi))
    return out
