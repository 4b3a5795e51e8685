"""Cost-aware training budgets: is the next unit of compute worth what it brings?

:class:`AdaptiveTrainer` plans budgets (batch size, epochs, width, or any integer
keys you bound) for successive training runs of the same task and learns from their
outcomes. Its reward is ``metric - alpha * cost`` and every plan is the budget with the
highest *predicted reward*; ``alpha`` is in metric units per cost unit, and ``cost``
is whatever the caller reports (the built-in tasks report batch size x epochs run).

Inside, three parts:

* a **critic** labels each outcome, with thresholds relative to the metric's scale
  ``scale = max(|best metric so far|, spread of the metrics so far)``:

  - ``"improvement"``: the metric beats the best so far by more than
    ``rel_tol * scale`` (default 0.5%: 0.0045 for an accuracy of 0.9, 0.6 for a
    metric of -120);
  - ``"saturation"``: no improvement, at a cost at least that of the run holding the
    best metric: more compute bought nothing;
  - ``"stagnation"``: no improvement at a smaller cost: learning stalled at a budget
    too small to tell.

  A non-finite metric is a stagnation and never the best.
* a **memory** of every outcome (budget, metric, cost, reward, label), the *elite*
  (the outcome with the highest reward), *penalised* budgets (those that saturated;
  a candidate within a factor ``neighbourhood`` of one on every key is avoided, so
  near-identical budgets are not retried), how often the planner *escalated*
  (spent more than the run holding the best metric) and whether that has *paid*
  (an escalation that was an improvement).
* a **planner** that scores a fixed grid of candidate budgets (geometric levels
  between the bounds) by ``predicted metric + optimism + escalation - penalty -
  alpha * predicted cost`` and plans the best. The predicted metric is a kernel
  average of the outcomes nearby (in log-budget space); optimism is one *unit*
  (``optimism`` x the metric's scale, default 2%), shrinking as evidence accumulates
  near a candidate. After a stagnation, when escalation has paid before (or has
  never been tried: one probe), candidates costing more than the last run get up
  to one more unit (one per doubling of cost): escalate. After a saturation the
  saturated neighbourhood loses two units, so cheaper budgets win on reward:
  de-escalate. Predicted cost is the cost model
  (batch size x epochs by default) calibrated by the median ratio of reported to
  modelled cost.

Only the ``- alpha * cost`` term depends on ``alpha``; ties go to the cheaper
budget. Hence, on the same history, raising ``alpha`` never raises the planned cost
(for ``a1 < a2`` with plans ``c1``, ``c2``: ``Q(c1) - a1 k1 >= Q(c2) - a1 k2`` and
``Q(c2) - a2 k2 >= Q(c1) - a2 k1`` give ``(a2 - a1)(k1 - k2) >= 0``). The first plan
is the cheap ``start`` point; a seeded trainer is deterministic (the seed draws which
candidates each plan considers). :attr:`AdaptiveTrainer.done` says when the elite has
not improved for ``patience`` rounds: more compute is no longer paying.

>>> import hagfish_jax as hj
>>> trainer = hj.AdaptiveTrainer(alpha=2e-5, seed=0)
>>> plan = trainer.plan({"dataset_size": 455})
>>> sorted(plan)
['batch_size', 'epochs', 'width']
>>> trainer.observe(metric=0.95, cost=plan["batch_size"] * plan["epochs"])
'improvement'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from ..core._checks import integer

__all__ = [
    "DEFAULT_BOUNDS",
    "LABELS",
    "AdaptiveTrainer",
    "Critic",
    "Memory",
    "Outcome",
    "Trial",
    "best_by_metric",
    "halving_epochs",
    "run_planner",
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

    @property
    def elite(self) -> Outcome | None:
        """The outcome with the highest finite reward (the cheaper one on a tie)."""
        finite = [o for o in self.outcomes if math.isfinite(o.reward)]
        return max(finite, key=lambda o: (o.reward, -o.cost), default=None)

    def near(self, a: Mapping[str, float], b: Mapping[str, float]) -> bool:
        """Whether ``a`` and ``b`` are neighbours (every shared key within the factor)."""
        limit = math.log(self.neighbourhood) + 1e-9
        return all(abs(math.log(a[k] / b[k])) <= limit for k in a if k in b)

    def add(self, outcome: Outcome) -> None:
        best = best_by_metric(self.outcomes)
        if best is not None:
            if outcome.cost > best.cost:
                self.escalations += 1
                if outcome.label == "improvement":
                    self.escalation_paid = True
        if outcome.label == "saturation":
            self.penalised.append(dict(outcome.params))
        before = self.elite
        self.outcomes.append(outcome)
        improved = before is None or self.elite is not before
        self.rounds_since_elite = 0 if improved else self.rounds_since_elite + 1

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

    def best(self) -> Outcome | None:
        """The elite: the outcome with the highest reward so far."""
        return self.memory.elite

    def reward(self, metric: float, cost: float) -> float:
        """``metric - alpha * cost`` (``-inf`` for a non-finite metric)."""
        return float(metric) - self.alpha * float(cost) if math.isfinite(metric) else -math.inf

    def plan(self, context: Mapping[str, Any] | None = None) -> dict[str, int]:
        """The next budget: a dict of integers within the bounds.

        ``context`` may carry ``dataset_size`` (the batch size never exceeds it).
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
          metric: higher is better (any sign); NaN/inf for a failed run.
          cost: what the run cost, >= 0, in the caller's units.
          params: the budget that ran; default the last plan.
        """
        if params is None:
            if self.last_plan is None:
                raise ValueError("AdaptiveTrainer.observe: no params given and nothing planned")
            params = self.last_plan
        budget = self._check_params(params)
        metric = float(metric)
        if isinstance(cost, bool) or not (math.isfinite(float(cost)) and float(cost) >= 0):
            raise ValueError(f"AdaptiveTrainer.observe: cost must be finite and >= 0, got {cost!r}")
        cost = float(cost)
        label = self.critic.label(metric, cost, self.memory.outcomes)
        self.memory.add(Outcome(budget, metric, cost, self.reward(metric, cost), label))
        return label

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
        if not outcomes:  # the budgets nearest the start point, cheaper first on a tie
            dist = np.abs(self._unit(grid) - self.start).sum(axis=1)
            order = np.lexsort((np.arange(len(grid)), self._model_cost(grid), dist))
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
        if self.memory.penalised:  # neighbours of a saturated budget on every key
            bad = np.log([[p[k] for k in self.keys] for p in self.memory.penalised])
            gap = np.abs(np.log(grid)[:, None, :] - bad[None, :, :])
            near = math.log(self.memory.neighbourhood) + 1e-9
            hit = np.any(np.all(gap <= near, axis=-1), axis=1)
            score = score - 2.0 * unit * hit
        value = score - self.alpha * cost
        # Best value; ties go to the cheaper budget, then the first in grid order.
        order = np.lexsort((np.arange(len(grid)), cost, -value))
        return [dict(zip(self.keys, map(int, grid[i]))) for i in order[:k]]


# -- trials driven by the planner -------------------------------------------------------


class Trial(Protocol):
    """One training run the planner asked for, trained in pieces.

    ``advance(epochs)`` trains that many more epochs and returns one row per epoch
    (dicts with at least ``window``; see :mod:`hagfish_jax.shell.records` for the columns
    the plots read). ``metric`` is the run's best validation score so far (what the
    planner is told), ``cost`` what it has cost so far, ``summary()`` what to record
    when it stops (for example the test score of its best state).
    """

    metric: float
    cost: float

    def advance(self, epochs: int) -> list[dict[str, Any]]: ...

    def summary(self) -> dict[str, Any]: ...


def halving_epochs(epochs: int, halvings: int, eta: int = 2) -> list[int]:
    """Cumulative epochs at each rung: the last is ``epochs``, each earlier one ``eta``
    times fewer (at least 1).

    >>> halving_epochs(40, 2)
    [10, 20, 40]
    """
    return [max(1, epochs // eta ** (halvings - r)) for r in range(halvings + 1)]


def run_planner(
    trainer: AdaptiveTrainer,
    start_trial: Callable[[dict[str, int]], Trial],
    rounds: int,
    context: Mapping[str, Any] | None = None,
    records: Any = None,
    halving: int = 0,
    eta: int = 2,
    stop_when_done: bool = True,
) -> dict[str, Any]:
    """Plan, train and observe for up to ``rounds`` rounds; return the outcomes.

    Each round runs one trial (``halving=0``), or a rung of ``eta ** halving`` trials
    (the best budgets by predicted reward) pruned by successive halving: all train
    ``1 / eta ** halving`` of their planned epochs, the better ``1 / eta`` by metric go
    on to ``eta`` times more, and so on; the last survivor completes its plan. Every
    trial is observed with the epochs it actually ran and the cost it actually spent,
    so pruned runs teach the planner too, and ``total_cost`` sums every trial.

    With ``records`` (a :class:`hagfish_jax.shell.records.RunRecords`), each trial's rows go
    to ``trials/trial_NNN/metrics.csv`` as it trains, a ``prune`` event marks each
    pruned trial, and its ``summary.json`` (params, metric, cost, reward, label) is
    written when it stops. Opening the same directory again replays the finished
    rounds into ``trainer`` (same plans, same outcomes) and continues after them; an
    unfinished round is trained again and rows already recorded are not duplicated.

    Stops early once ``trainer.done`` (if ``stop_when_done``).
    """
    rounds = integer("run_planner: rounds", rounds, 1)
    halving = integer("run_planner: halving", halving, 0)
    eta = integer("run_planner: eta", eta, 2)
    finished = {} if records is None else records.summaries()
    outcomes: list[dict[str, Any]] = []
    number = 0
    for _ in range(rounds):
        if stop_when_done and trainer.done:
            break
        plans = trainer.plan_many(eta**halving, context) if halving else [trainer.plan(context)]
        names = [f"trial_{number + i:03d}" for i in range(len(plans))]
        number += len(plans)
        if all(n in finished for n in names):  # a round that already ran: replay it
            for name in sorted(names, key=lambda n: finished[n]["observed"]):
                s = finished[name]
                trainer.observe(s["metric"], s["cost"], params=s["params"])
                outcomes.append({"trial": name, **s})
            continue
        planned = dict(zip(names, plans))
        trials = {n: start_trial(dict(p)) for n, p in planned.items()}
        ran = {n: 0 for n in names}
        alive = list(names)
        for rung in range(halving + 1):
            for n in alive:
                target = halving_epochs(planned[n]["epochs"], halving, eta)[rung]
                if target > ran[n]:
                    rows = trials[n].advance(target - ran[n])
                    ran[n] = target
                    if records is not None:
                        records.log(n, rows)
            if rung < halving:
                ranked = sorted(alive, key=lambda n: -_finite(trials[n].metric))
                keep = ranked[: max(1, len(alive) // eta)]
                for n in alive:
                    if n not in keep:
                        _finish(trainer, records, outcomes, n, trials[n], planned[n], ran[n], True)
                alive = keep
        for n in alive:
            _finish(trainer, records, outcomes, n, trials[n], planned[n], ran[n], False)
    best = max(outcomes, key=lambda o: (o["reward"], -o["cost"]), default=None)
    return {
        "outcomes": outcomes,
        "best": best,
        "total_cost": float(sum(o["cost"] for o in outcomes)),
        "trials": len(outcomes),
    }


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _finish(trainer, records, outcomes, name, trial, planned, epochs, pruned):
    params = {**planned, "epochs": int(epochs)}
    label = trainer.observe(trial.metric, trial.cost, params=params)
    summary = {
        "observed": len(trainer.history) - 1,  # replay order on resume
        "params": params,
        "planned": dict(planned),
        "metric": float(trial.metric),
        "cost": float(trial.cost),
        "reward": trainer.reward(trial.metric, trial.cost),
        "label": label,
        "pruned": pruned,
        "best_val_score": float(trial.metric),
        **trial.summary(),
    }
    if records is not None:
        if pruned:
            records.event("prune", trial=name, epochs=int(epochs), metric=float(trial.metric))
        records.finish_trial(name, summary)
    outcomes.append({"trial": name, **summary})
