"""The budget planner: :class:`AdaptiveTrainer` (see :mod:`hagfish_jax.shell.budget`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...core._checks import integer
from .memory import (
    _CONTEXT_KEYS,
    DEFAULT_BOUNDS,
    Critic,
    Memory,
    Outcome,
    _check_bounds,
    default_cost,
)

__all__ = ["AdaptiveTrainer"]


class AdaptiveTrainer:
    """Plans training budgets whose predicted reward ``metric - alpha * cost`` is highest.

    Args:
      alpha: cost weight (metric units per cost unit), >= 0.
      bounds: ``{key: (low, high)}`` inclusive integer bounds of each budget key;
        default :data:`DEFAULT_BOUNDS` (batch size, epochs, width).
      seed: seeds which candidates each plan considers.
      cost_fn: the cost model of a budget, in any unit proportional to the reported
        cost (default batch size x epochs).
      start: where the first plan sits on each key's log range (0 = low, 1 = high).
      levels: candidate levels per key (geometric, rounded to integers).
      rel_tol: the critic's improvement threshold (share of the metric's scale).
      neighbourhood: the factor within which budgets count as the same.
      optimism: one unit of hoped-for gain, as a share of the metric's scale.
      patience: rounds without a new elite after which :attr:`done` is true.
      sample: share of the candidate grid considered by each plan (seeded draw).
    """

    def __init__(
        self,
        alpha: float = 2e-5,
        bounds: Mapping[str, tuple[int, int]] | None = None,
        seed: int = 0,
        cost_fn: Callable[[Mapping[str, int]], float] = default_cost,
        start: float = 0.25,
        levels: int = 9,
        rel_tol: float = 0.005,
        neighbourhood: float = 1.5,
        optimism: float = 0.02,
        patience: int = 3,
        sample: float = 0.5,
    ) -> None:
        if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and alpha >= 0):
            raise ValueError(f"AdaptiveTrainer: alpha must be a number >= 0, got {alpha!r}")
        if not math.isfinite(alpha):
            raise ValueError(f"AdaptiveTrainer: alpha must be finite, got {alpha!r}")
        if not 0.0 <= start <= 1.0:
            raise ValueError(f"AdaptiveTrainer: start must be in [0, 1], got {start!r}")
        levels = integer("AdaptiveTrainer: levels", levels, 2)
        if not optimism >= 0:
            raise ValueError(f"AdaptiveTrainer: optimism must be >= 0, got {optimism!r}")
        patience = integer("AdaptiveTrainer: patience", patience, 1)
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"AdaptiveTrainer: sample must be in (0, 1], got {sample!r}")
        self.alpha = float(alpha)
        self.bounds = _check_bounds(DEFAULT_BOUNDS if bounds is None else bounds)
        self.keys = tuple(self.bounds)
        self.cost_fn = cost_fn
        self.start = float(start)
        self.optimism = float(optimism)
        self.patience = patience
        self.sample = float(sample)
        self.critic = Critic(rel_tol)
        self.memory = Memory(neighbourhood)
        self.seed = int(seed)
        self.levels = levels
        self.rng = np.random.default_rng(seed)
        self.last_plan: dict[str, int] | None = None
        self._levels = {k: self._key_levels(lo, hi, levels) for k, (lo, hi) in self.bounds.items()}
        mesh = np.meshgrid(*[self._levels[k] for k in self.keys], indexing="ij")
        self._grid = np.stack([m.ravel() for m in mesh], axis=1).astype(np.int64)

    # -- public API -------------------------------------------------------------------

    @property
    def history(self) -> list[Outcome]:
        """Every outcome observed so far, in order."""
        return list(self.memory.outcomes)

    @property
    def done(self) -> bool:
        """True once the elite's reward has not improved for ``patience`` rounds."""
        return self.memory.rounds_since_elite >= self.patience

    def one_round(self) -> contextlib.AbstractContextManager[None]:
        """A context whose observations count as one round for :attr:`done`:
        :func:`~hagfish_jax.shell.budget.trials.run_planner` opens one per round, so a
        round of successive halving (several trials) counts once against ``patience``."""
        return self.memory.one_round()

    def best(self) -> Outcome | None:
        """The elite: the outcome with the highest reward so far."""
        return self.memory.elite

    def reward(self, metric: float, cost: float) -> float:
        """``metric - alpha * cost`` (``-inf`` for a non-finite metric)."""
        return float(metric) - self.alpha * float(cost) if math.isfinite(metric) else -math.inf

    def plan(self, context: Mapping[str, Any] | None = None) -> dict[str, int]:
        """The next budget: a dict of integers within the bounds.

        ``context`` may carry ``dataset_size``: the batch size stays at or below it,
        unless every batch size level is above it (then the smallest level is planned).
        """
        grid = self._candidates(context)
        self.last_plan = self._choose(grid)[0]
        return dict(self.last_plan)

    def plan_many(self, k: int, context: Mapping[str, Any] | None = None) -> list[dict[str, int]]:
        """The ``k`` budgets with the highest predicted reward, best first (for a rung
        of successive halving); the first is what :meth:`plan` would return."""
        k = integer("AdaptiveTrainer.plan_many: k", k, 1)
        plans = self._choose(self._candidates(context), k=k)
        self.last_plan = plans[0]
        return [dict(p) for p in plans]

    def observe(self, metric: float, cost: float, params: Mapping[str, Any] | None = None) -> str:
        """Record an outcome; return the critic's label.

        Args:
          metric: higher is better (any sign); ``-inf`` for a failed run.
          cost: what the run cost, >= 0, in the caller's units.
          params: the budget that ran; default the last plan.

        Raises:
          ValueError: a NaN or ``+inf`` metric (a bug upstream, not a result; report a
            failed run as ``-inf``), a bad cost or params.
        """
        if params is None:
            if self.last_plan is None:
                raise ValueError("AdaptiveTrainer.observe: no params given and nothing planned")
            params = self.last_plan
        budget = self._check_params(params)
        metric = float(metric)
        if math.isnan(metric) or metric == math.inf:
            raise ValueError(
                f"AdaptiveTrainer.observe: metric must be a number or -inf (a failed run), "
                f"got {metric!r}"
            )
        if isinstance(cost, bool) or not (math.isfinite(float(cost)) and float(cost) >= 0):
            raise ValueError(f"AdaptiveTrainer.observe: cost must be finite and >= 0, got {cost!r}")
        cost = float(cost)
        history = self.memory.outcomes
        label = self.critic.label(metric, cost, history)
        tol = self.critic.rel_tol * self.critic.scale([o.metric for o in history] + [metric])
        self.memory.add(Outcome(budget, metric, cost, self.reward(metric, cost), label), tol)
        return label

    def config(self) -> dict[str, Any]:
        """What defines this trainer's runs (for records: a directory holding another
        trainer's run is not replayed into this one)."""
        fn = self.cost_fn
        return {
            "alpha": self.alpha,
            "bounds": {k: list(v) for k, v in self.bounds.items()},
            "seed": self.seed,
            "cost_fn": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}",
            "start": self.start,
            "levels": self.levels,
            "rel_tol": self.critic.rel_tol,
            "neighbourhood": self.memory.neighbourhood,
            "optimism": self.optimism,
            "patience": self.patience,
            "sample": self.sample,
        }

    def state_dict(self) -> dict[str, Any]:
        """The memory as plain data (for records and inspection)."""
        return {"alpha": self.alpha, "bounds": dict(self.bounds), **self.memory.state_dict()}

    # -- internals --------------------------------------------------------------------

    @staticmethod
    def _key_levels(lo: int, hi: int, n: int) -> np.ndarray:
        return np.unique(np.round(np.geomspace(lo, hi, min(n, hi - lo + 1))).astype(np.int64))

    def _check_params(self, params: Mapping[str, Any]) -> dict[str, int]:
        if not isinstance(params, Mapping):
            raise ValueError(f"AdaptiveTrainer.observe: params must be a mapping, got {params!r}")
        missing = [k for k in self.keys if k not in params]
        if missing:
            raise ValueError(f"AdaptiveTrainer.observe: params lack {missing}; keys {self.keys}")
        out = {}
        for k in self.keys:
            v = params[k]
            if isinstance(v, bool) or not float(v).is_integer() or v < 1:
                raise ValueError(f"AdaptiveTrainer.observe: params[{k!r}] must be an int >= 1")
            out[k] = int(v)
        return out

    def _candidates(self, context: Mapping[str, Any] | None) -> np.ndarray:
        grid = self._grid
        if context is None:
            return grid
        if not isinstance(context, Mapping):
            raise ValueError(f"AdaptiveTrainer.plan: context must be a mapping, got {context!r}")
        unknown = sorted(set(context) - set(_CONTEXT_KEYS))
        if unknown:
            raise ValueError(
                f"AdaptiveTrainer.plan: unknown context keys {unknown}; accepted {_CONTEXT_KEYS}"
            )
        size = context.get("dataset_size")
        if size is not None and "batch_size" in self.keys:
            if isinstance(size, bool) or not float(size).is_integer() or size < 1:
                raise ValueError(
                    f"AdaptiveTrainer.plan: dataset_size must be an int >= 1, got {size!r}"
                )
            col = self.keys.index("batch_size")
            capped = grid[grid[:, col] <= size]
            if len(capped) == 0:  # every level is above it: the smallest batch size
                capped = grid[grid[:, col] == grid[:, col].min()]
            grid = capped
        return grid

    def _near_penalised(self, grid: np.ndarray) -> np.ndarray:
        """Whether each budget of ``grid`` is a neighbour of a penalised one."""
        if not self.memory.penalised:
            return np.zeros(len(grid), bool)
        bad = np.log([[p[k] for k in self.keys] for p in self.memory.penalised])
        gap = np.abs(np.log(grid)[:, None, :] - bad[None, :, :])
        near = math.log(self.memory.neighbourhood) + 1e-9
        return np.any(np.all(gap <= near, axis=-1), axis=1)

    def _unit(self, budgets: np.ndarray) -> np.ndarray:
        """Budgets as points of [0, 1]^d on each key's log range."""
        lo = np.array([self.bounds[k][0] for k in self.keys], float)
        hi = np.array([self.bounds[k][1] for k in self.keys], float)
        span = np.where(hi > lo, np.log(hi) - np.log(lo), 1.0)
        return (np.log(budgets) - np.log(lo)) / span

    def _model_cost(self, budgets: np.ndarray) -> np.ndarray:
        return np.array([self.cost_fn(dict(zip(self.keys, map(int, b)))) for b in budgets])

    def _choose(self, grid: np.ndarray, k: int = 1) -> list[dict[str, int]]:
        outcomes = [o for o in self.memory.outcomes if math.isfinite(o.metric)]
        # Draw the considered subset first, the same way whatever the history or alpha.
        keep = self.rng.random(len(grid)) < self.sample
        if not outcomes:  # the budgets nearest the start point, cheaper first on a tie,
            # those near a budget that failed last
            dist = np.abs(self._unit(grid) - self.start).sum(axis=1)
            failed = self._near_penalised(grid)
            order = np.lexsort((np.arange(len(grid)), self._model_cost(grid), dist, failed))
            return [dict(zip(self.keys, map(int, grid[i]))) for i in order[:k]]
        if not keep.any():
            keep[:] = True
        grid = grid[keep]
        seen = np.array([[o.params[k] for k in self.keys] for o in outcomes], np.int64)
        z, zo = self._unit(grid), self._unit(seen)
        metrics = np.array([o.metric for o in outcomes])
        unit = self.optimism * self.critic.scale(list(metrics))  # one unit of hoped-for gain
        # Kernel average of nearby outcomes, shrunk towards their mean.
        h = 0.2
        d2 = ((z[:, None, :] - zo[None, :, :]) ** 2).sum(-1)
        w = np.exp(-0.5 * d2 / h**2)
        n_eff = w.sum(1)
        prior_w = 0.1
        mean = (w @ metrics + prior_w * metrics.mean()) / (n_eff + prior_w)
        score = mean + unit / np.sqrt(1.0 + n_eff)
        # Predicted cost in the caller's units.
        model = self._model_cost(grid)
        ratios = [o.cost / m for o, m in zip(outcomes, self._model_cost(seen)) if m > 0]
        cost = model * (float(np.median(ratios)) if ratios else 1.0)
        last = self.memory.outcomes[-1]
        last_model = self.cost_fn(last.params)
        may_escalate = self.memory.escalation_paid or self.memory.escalations == 0
        if last.label == "stagnation" and may_escalate and last_model > 0:
            doublings = np.log2(np.maximum(model, 1e-12) / last_model)
            score = score + unit * np.clip(doublings, 0.0, 1.0)
        # neighbours on every key of a saturated budget, or of one that failed
        score = score - 2.0 * unit * self._near_penalised(grid)
        value = score - self.alpha * cost
        # Best value; ties go to the cheaper budget, then the first in grid order.
        order = np.lexsort((np.arange(len(grid)), cost, -value))
        return [dict(zip(self.keys, map(int, grid[i]))) for i in order[:k]]
