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

from .memory import DEFAULT_BOUNDS, LABELS, Critic, Memory, Outcome, best_by_metric, default_cost
from .planner import AdaptiveTrainer
from .trials import TaskTrial, Trial, halving_epochs, run_planner, task_trials

__all__ = [
    "DEFAULT_BOUNDS",
    "LABELS",
    "AdaptiveTrainer",
    "Critic",
    "Memory",
    "Outcome",
    "TaskTrial",
    "Trial",
    "best_by_metric",
    "default_cost",
    "halving_epochs",
    "run_planner",
    "task_trials",
]
