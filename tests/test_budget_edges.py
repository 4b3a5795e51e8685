"""Behaviour of the budget planner, its critic and memory, and run_planner."""

from __future__ import annotations

import math
import shutil

import pytest

import hagfish_jax as hj
from hagfish_jax.shell.budget import Critic, Outcome
from hagfish_jax.shell.budget.memory import best_by_metric
from hagfish_jax.shell.budget.trials import halving_epochs, run_planner
from hagfish_jax.shell.records import RunRecords

BUDGET = {"batch_size": 16, "epochs": 10, "width": 32}


def test_start_and_sample_accept_their_closed_ends():
    hj.AdaptiveTrainer(start=0.0)
    hj.AdaptiveTrainer(start=1.0)
    assert hj.AdaptiveTrainer(sample=1.0).sample == 1.0
    with pytest.raises(ValueError, match="start"):
        hj.AdaptiveTrainer(start=-0.01)
    with pytest.raises(ValueError, match="sample"):
        hj.AdaptiveTrainer(sample=0.0)


def test_observe_refuses_a_zero_budget_value():
    trainer = hj.AdaptiveTrainer()
    with pytest.raises(ValueError, match="batch_size"):
        trainer.observe(0.9, 1.0, params={"batch_size": 0, "epochs": 5, "width": 8})


def test_batch_size_may_equal_the_dataset_size():
    trainer = hj.AdaptiveTrainer(bounds={"batch_size": (8, 16), "epochs": (5, 5)}, start=1.0)
    assert trainer.plan({"dataset_size": 16})["batch_size"] == 16
    assert trainer.plan({"dataset_size": 15})["batch_size"] < 16


def test_a_dataset_smaller_than_every_batch_size_plans_the_smallest_batch_size():
    trainer = hj.AdaptiveTrainer(seed=0)
    assert trainer.plan({"dataset_size": 4})["batch_size"] == 8
    trainer.observe(0.5, 40.0)
    assert trainer.plan({"dataset_size": 4})["batch_size"] == 8


def test_a_tiny_sample_share_still_plans_a_budget():
    trainer = hj.AdaptiveTrainer(seed=0, sample=1e-9)
    trainer.observe(0.5, 160.0, params=BUDGET)
    plan = trainer.plan()
    assert set(plan) == {"batch_size", "epochs", "width"}


@pytest.mark.parametrize("seed", range(4))
def test_escalates_after_a_stagnation_once_escalation_has_paid_even_at_a_higher_alpha(seed):
    trainer = hj.AdaptiveTrainer(alpha=1e-4, seed=seed)
    cheap = {"batch_size": 16, "epochs": 10, "width": 32}
    more = {"batch_size": 16, "epochs": 20, "width": 32}
    trainer.observe(0.80, 160, params=cheap)
    trainer.observe(0.90, 320, params=more)
    assert trainer.memory.escalations == 1 and trainer.memory.escalation_paid
    assert trainer.observe(0.85, 160, params=cheap) == "stagnation"
    plan = trainer.plan()
    assert plan["batch_size"] * plan["epochs"] > 160


def test_ties_in_predicted_reward_go_to_the_cheaper_budget():
    # a cost model that is cheapest at the widest budget (last in grid order)
    trainer = hj.AdaptiveTrainer(alpha=0.0, optimism=0.0, seed=0, sample=1.0,
                                 cost_fn=lambda p: float(1000 - p["width"]))
    trainer.observe(0.0, 1.0, params=BUDGET)
    assert trainer.plan()["width"] == 256


def test_an_equal_metric_is_no_improvement_at_zero_tolerance():
    critic = Critic(rel_tol=0.0)
    past = [Outcome(dict(BUDGET), 0.9, 100.0, 0.9, "improvement")]
    assert critic.label(0.9, 100.0, past) == "saturation"
    assert critic.label(0.9, 50.0, past) == "stagnation"


def test_the_critics_scale_is_the_larger_of_best_and_range():
    assert Critic.scale([-10.0, 0.5]) == 10.5
    assert Critic.scale([2.0, 1.5]) == 2.0
    assert Critic.scale([0.0, 0.0]) == 1e-12


def test_best_by_metric_and_the_elite_prefer_the_cheaper_on_a_tie():
    a = Outcome(dict(BUDGET), 0.9, 100.0, 0.9, "improvement")
    b = Outcome(dict(BUDGET), 0.9, 50.0, 0.9, "saturation")
    assert best_by_metric([a, b]) is b
    trainer = hj.AdaptiveTrainer(alpha=0.0)
    trainer.observe(0.9, 100.0, params=BUDGET)
    trainer.observe(0.9, 50.0, params=BUDGET)
    assert trainer.best().cost == 50.0


def test_a_run_at_the_same_cost_is_no_escalation():
    trainer = hj.AdaptiveTrainer()
    trainer.observe(0.80, 160, params=BUDGET)
    trainer.observe(0.90, 160, params={**BUDGET, "width": 64})
    assert trainer.memory.escalations == 0
    assert not trainer.memory.escalation_paid


def test_a_saturated_budget_is_penalised():
    trainer = hj.AdaptiveTrainer(alpha=2e-5, seed=0)
    big = {"batch_size": 64, "epochs": 100, "width": 128}
    trainer.observe(0.95, 320, params=BUDGET)
    assert trainer.observe(0.951, 6400, params=big) == "saturation"
    assert trainer.memory.penalised == [big]


def test_an_empty_round_does_not_count_against_patience():
    trainer = hj.AdaptiveTrainer(patience=1)
    trainer.observe(0.9, 10.0, params=BUDGET)
    assert trainer.memory.rounds_since_elite == 0
    with trainer.one_round():
        pass
    assert trainer.memory.rounds_since_elite == 0 and not trainer.done


def test_halving_epochs_never_gives_a_rung_of_zero_epochs():
    assert halving_epochs(3, 2) == [1, 1, 3]
    assert halving_epochs(1, 3) == [1, 1, 1, 1]


class _Scored:
    """A trial whose metric grows with its batch size and width; it records every advance."""

    calls: list = []

    def __init__(self, params):
        self.params, self.metric, self.cost, self.ran = params, -math.inf, 0.0, 0

    def advance(self, epochs):
        _Scored.calls.append(epochs)
        self.ran += epochs
        self.cost += epochs * self.params["batch_size"]
        self.metric = (self.params["batch_size"] + self.params["width"]) / 1000.0
        return [{"window": self.ran - 1}]

    def summary(self):
        return {"ran": self.ran}


def _halving_trainer(epochs=(8, 40)):
    return hj.AdaptiveTrainer(seed=0, alpha=0.0, patience=50,
                              bounds={"batch_size": (8, 32), "epochs": epochs,
                                      "width": (8, 256)})


def test_successive_halving_keeps_the_better_trials_and_records_the_epochs_they_ran():
    _Scored.calls = []
    out = run_planner(_halving_trainer(), _Scored, rounds=1, halving=2)
    outcomes = out["outcomes"]
    assert len(outcomes) == 4
    pruned = [o for o in outcomes if o["pruned"]]
    survivor = [o for o in outcomes if not o["pruned"]]
    assert len(survivor) == 1
    assert all(o["metric"] <= survivor[0]["metric"] for o in pruned)
    for o in outcomes:
        assert o["params"]["epochs"] == o["ran"]
    assert any(o["params"]["epochs"] < o["planned"]["epochs"] for o in pruned)
    assert len({o["metric"] for o in outcomes}) > 1


def test_successive_halving_never_asks_a_trial_for_zero_epochs():
    _Scored.calls = []
    out = run_planner(_halving_trainer(epochs=(2, 3)), _Scored, rounds=2, halving=2)
    assert out["trials"] == 8
    assert _Scored.calls and 0 not in _Scored.calls


class _Flat:
    def __init__(self, params):
        self.params, self.metric, self.cost = params, -math.inf, 0.0

    def advance(self, epochs):
        self.cost += epochs * self.params["batch_size"]
        self.metric = 0.6
        return [{"window": 0}]

    def summary(self):
        return {}


def test_stop_when_done_false_runs_every_round():
    trainer = hj.AdaptiveTrainer(seed=0, patience=1, alpha=0.0)
    out = run_planner(trainer, _Flat, rounds=5, stop_when_done=False)
    assert out["trials"] == 5 and trainer.done


def test_the_best_outcome_is_the_cheaper_on_a_reward_tie():
    out = run_planner(hj.AdaptiveTrainer(seed=0, alpha=0.0, patience=50), _Flat, rounds=4)
    rewards = {o["reward"] for o in out["outcomes"]}
    assert len(rewards) == 1
    assert out["best"]["cost"] == min(o["cost"] for o in out["outcomes"])


def test_a_round_that_finished_only_in_part_is_trained_again(tmp_path):
    with RunRecords(tmp_path) as rec:
        first = run_planner(_halving_trainer(), _Scored, rounds=1, halving=1, records=rec)
    assert first["trials"] == 2
    survivor = next(o["trial"] for o in first["outcomes"] if not o["pruned"])
    shutil.rmtree(tmp_path / "trials" / survivor)
    with RunRecords(tmp_path) as rec:
        again = run_planner(_halving_trainer(), _Scored, rounds=1, halving=1, records=rec)
    assert again["trials"] == 2
    assert {o["trial"] for o in again["outcomes"]} == {o["trial"] for o in first["outcomes"]}


def _curve(p):
    steps = p["epochs"] * 455 / p["batch_size"]
    return 0.97 - 0.3 * math.exp(-steps / 300) - 0.05 * math.exp(-p["width"] / 16)
