"""The cost-aware budget planner: determinism, bounds, alpha, critic, escalation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax.shell.budget import Critic, Outcome
from hagfish_jax.shell.records import RunRecords


def curve(p):
    """A noise-free task: accuracy rises with optimizer steps and width, then saturates."""
    steps = p["epochs"] * 455 / p["batch_size"]
    return 0.97 - 0.3 * math.exp(-steps / 300) - 0.05 * math.exp(-p["width"] / 16)


def drive(trainer, rounds, metric=curve, context=None):
    plans = []
    for _ in range(rounds):
        p = trainer.plan(context)
        plans.append(p)
        trainer.observe(metric(p), p["batch_size"] * p["epochs"])
    return plans


def test_the_same_seed_gives_the_same_plans_and_another_seed_may_differ():
    a = drive(hj.AdaptiveTrainer(seed=3), 15)
    b = drive(hj.AdaptiveTrainer(seed=3), 15)
    assert a == b
    c = drive(hj.AdaptiveTrainer(seed=4), 15)
    assert a != c


def test_plans_stay_in_bounds_for_1000_rounds_with_odd_outcomes():
    bounds = {"batch_size": (4, 100), "epochs": (1, 37), "width": (3, 3)}
    trainer = hj.AdaptiveTrainer(alpha=1e-3, bounds=bounds, seed=0)
    rng = np.random.default_rng(0)
    for i in range(1000):
        p = trainer.plan({"dataset_size": 60})
        for k, (lo, hi) in bounds.items():
            assert isinstance(p[k], int) and lo <= p[k] <= hi
        assert p["batch_size"] <= 60
        metric = [rng.normal(-50, 20), -float("inf"), 0.0, rng.random()][i % 4]  # a failed run
        cost = [0.0, rng.random() * 1e4, 5.0][i % 3]  # zero cost included
        assert trainer.observe(metric, cost) in hj.budget.LABELS
    assert all(math.isfinite(o.reward) or not math.isfinite(o.metric) for o in trainer.history)
    assert math.isfinite(trainer.best().reward)


@pytest.mark.parametrize("seed", range(6))
def test_raising_alpha_never_raises_the_planned_cost(seed):
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(int(rng.integers(1, 12))):
        p = {
            "batch_size": int(rng.integers(8, 257)),
            "epochs": int(rng.integers(5, 201)),
            "width": int(rng.integers(8, 257)),
        }
        history.append((p, curve(p) + rng.normal(0, 0.01), p["batch_size"] * p["epochs"]))
    costs = []
    for alpha in (0.0, 1e-6, 2e-5, 1e-4, 1e-3, 1e-2):
        trainer = hj.AdaptiveTrainer(alpha=alpha, seed=seed)
        for p, metric, cost in history:
            trainer.observe(metric, cost, params=p)
        plan = trainer.plan()
        costs.append(plan["batch_size"] * plan["epochs"])
    assert all(b <= a for a, b in zip(costs, costs[1:])), costs
    assert costs[0] > costs[-1]  # and alpha does matter


def test_critic_thresholds_scale_with_the_metric_and_handle_negative_metrics():
    critic = Critic(rel_tol=0.01)
    past = [Outcome({"epochs": 10}, 0.9, 100.0, 0.9, "improvement")]
    tol = 0.01 * 0.9
    assert critic.label(0.9 + tol * 1.01, 100.0, past) == "improvement"
    assert critic.label(0.9 + tol * 0.99, 100.0, past) == "saturation"  # same cost
    assert critic.label(0.9 + tol * 0.99, 50.0, past) == "stagnation"  # cheaper
    assert critic.label(float("nan"), 50.0, past) == "stagnation"
    assert critic.label(0.1, 50.0, []) == "improvement"
    neg = [Outcome({"epochs": 10}, -100.0, 100.0, -100.0, "improvement")]
    assert critic.label(-98.9, 100.0, neg) == "improvement"  # tol = 1.0
    assert critic.label(-99.1, 100.0, neg) == "saturation"
    assert critic.label(-99.1, 10.0, neg) == "stagnation"


def test_escalates_after_a_stagnation_when_escalation_has_paid():
    trainer = hj.AdaptiveTrainer(alpha=2e-5, seed=0)
    cheap = {"batch_size": 16, "epochs": 10, "width": 32}
    more = {"batch_size": 16, "epochs": 20, "width": 32}
    trainer.observe(0.80, 160, params=cheap)
    assert trainer.observe(0.90, 320, params=more) == "improvement"  # spending more paid
    assert trainer.memory.escalation_paid
    assert trainer.observe(0.85, 160, params=cheap) == "stagnation"
    plan = trainer.plan()
    assert plan["batch_size"] * plan["epochs"] > 160


def test_deescalates_after_a_saturation():
    trainer = hj.AdaptiveTrainer(alpha=2e-5, seed=0)
    cheap = {"batch_size": 16, "epochs": 20, "width": 32}
    big = {"batch_size": 64, "epochs": 100, "width": 128}
    trainer.observe(0.95, 320, params=cheap)
    assert trainer.observe(0.951, 6400, params=big) == "saturation"
    for _ in range(5):
        plan = trainer.plan()
        assert plan["batch_size"] * plan["epochs"] < 6400
        assert not trainer.memory.near(plan, big)
        trainer.observe(0.95, plan["batch_size"] * plan["epochs"])


def test_starts_cheap_and_reward_drives_the_choice():
    trainer = hj.AdaptiveTrainer(alpha=2e-5, seed=0)
    first = trainer.plan()
    assert first["batch_size"] * first["epochs"] <= 32 * 20
    # identical metrics everywhere: only cost separates budgets, so plans get cheaper
    plans = drive(hj.AdaptiveTrainer(alpha=1e-3, seed=1), 8, metric=lambda p: 0.9)
    costs = [p["batch_size"] * p["epochs"] for p in plans]
    assert min(costs[1:]) < costs[0]
    accurate = drive(hj.AdaptiveTrainer(alpha=0.0, seed=1), 8)
    frugal = drive(hj.AdaptiveTrainer(alpha=1e-3, seed=1), 8)
    assert sum(p["batch_size"] * p["epochs"] for p in frugal) < sum(
        p["batch_size"] * p["epochs"] for p in accurate
    )


def test_done_after_patience_rounds_without_a_new_elite():
    trainer = hj.AdaptiveTrainer(alpha=1e-3, patience=2, seed=0)
    p = trainer.plan()
    trainer.observe(0.9, 10, params=p)
    assert not trainer.done
    trainer.observe(0.5, 10, params=p)
    assert not trainer.done
    trainer.observe(0.5, 10, params=p)
    assert trainer.done
    trainer.observe(0.99, 10, params=p)
    assert not trainer.done and trainer.best().metric == 0.99


def test_zero_cost_and_the_reward():
    trainer = hj.AdaptiveTrainer(alpha=0.5)
    trainer.observe(-3.0, 0.0, params={"batch_size": 8, "epochs": 5, "width": 8})
    assert trainer.best().reward == -3.0
    assert trainer.reward(1.0, 2.0) == 0.0
    assert trainer.reward(float("nan"), 2.0) == -math.inf
    plan = trainer.plan()  # every observed cost is 0: cost no longer separates budgets
    assert set(plan) == {"batch_size", "epochs", "width"}


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"bounds": {"epochs": (0, 5)}}, "epochs"),
        ({"bounds": {"epochs": (5, 2)}}, "epochs"),
        ({"bounds": {"epochs": 5}}, "epochs"),
        ({"bounds": {}}, "bounds"),
        ({"levels": 1}, "levels"),
        ({"patience": 0}, "patience"),
    ],
)
def test_bad_settings_are_rejected(kwargs, word):
    with pytest.raises(ValueError, match=word):
        hj.AdaptiveTrainer(**kwargs)


def test_bad_calls_are_rejected():
    trainer = hj.AdaptiveTrainer()
    with pytest.raises(ValueError, match="nothing planned"):
        trainer.observe(0.9, 10)
    with pytest.raises(ValueError, match="dataset"):
        trainer.plan({"datasetsize": 10})
    plan = trainer.plan()
    with pytest.raises(ValueError, match="cost"):
        trainer.observe(0.9, -1.0)
    with pytest.raises(ValueError, match="width"):
        trainer.observe(0.9, 1.0, params={"batch_size": 8, "epochs": 5})
    assert trainer.observe(0.9, 1.0) == "improvement" and trainer.last_plan == plan


def test_nan_or_plus_inf_metrics_are_refused_minus_inf_is_a_failed_run():
    trainer = hj.AdaptiveTrainer(seed=0)
    trainer.plan({"dataset_size": 400})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="metric must be a number or -inf"):
            trainer.observe(bad, 10.0)
    assert trainer.observe(-float("inf"), 10.0) == "stagnation"


def test_tiny_gains_below_the_threshold_still_end_in_done():
    trainer = hj.AdaptiveTrainer(seed=0, patience=3, rel_tol=0.005)
    params = {"batch_size": 32, "epochs": 10, "width": 32}
    labels = [trainer.observe(0.9 + 1e-5 * i, 320.0, params=params) for i in range(6)]
    assert labels[0] == "improvement" and set(labels[1:]) == {"saturation"}
    assert trainer.done  # gains of 1e-5 never count as the elite improving


def test_the_planner_refuses_a_directory_of_another_trainer(tmp_path):
    def start(params):
        class T:
            metric, cost = 0.9, 1.0

            def advance(self, epochs):
                return [{"window": i, "val_accuracy": 0.9} for i in range(epochs)]

            def summary(self):
                return {}

        return T()

    def run(alpha, **kw):
        with hj.records.RunRecords(tmp_path) as rec:
            trainer = hj.AdaptiveTrainer(alpha=alpha, seed=0,
                                         bounds={"batch_size": (8, 16), "epochs": (1, 3)})
            return hj.budget.run_planner(trainer, start, 2, records=rec,
                                         fingerprint={"task": "t"}, **kw)

    first = run(2e-5)
    assert run(2e-5)["trials"] == first["trials"]  # the same run resumes (replayed)
    with pytest.raises(ValueError, match="holds another planner run \\(alpha differ\\)"):
        run(1e-3)
    again = run(1e-3, on_mismatch="replace")
    assert again["trials"] == 2
    assert hj.records.read_run(tmp_path)["meta"]["planner"]["alpha"] == 1e-3


class _Flat:
    """A trial whose metric is the same whatever it trains (fast: no JAX)."""

    def __init__(self, params):
        self.params, self.metric, self.cost = params, -math.inf, 0.0

    def advance(self, epochs):
        self.cost += epochs * self.params.get("batch_size", 1)
        self.metric = 0.6
        return [{"window": 0}]

    def summary(self):
        return {}


def test_the_planner_needs_epochs_and_reads_numpy_context_as_numbers(tmp_path):
    no_epochs = hj.AdaptiveTrainer(bounds={"width": (8, 256)}, cost_fn=lambda p: p["width"])
    with pytest.raises(ValueError, match="need an 'epochs' key"):
        hj.budget.run_planner(no_epochs, _Flat, rounds=2)
    with RunRecords(tmp_path / "run") as rec:
        first = hj.budget.run_planner(hj.AdaptiveTrainer(alpha=1e-5), _Flat, rounds=2,
                                      records=rec, context={"dataset_size": 100})
    with RunRecords(tmp_path / "run") as rec:  # the same run, its size as a NumPy integer
        again = hj.budget.run_planner(hj.AdaptiveTrainer(alpha=1e-5), _Flat, rounds=2,
                                      records=rec, context={"dataset_size": np.int64(100)})
    assert [o["trial"] for o in again["outcomes"]] == [o["trial"] for o in first["outcomes"]]


def test_the_planner_refuses_a_directory_of_another_kind_of_run(tmp_path):
    with RunRecords(tmp_path, {"kind": "hpo"}) as rec:  # trials, and no planner entry
        rec.finish_trial("trial_000", {"status": "finished", "best_val_accuracy": 0.9})
    def files():
        return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}

    before = files()
    with RunRecords(tmp_path) as rec:
        with pytest.raises(ValueError, match="holds another kind of run"):
            hj.budget.run_planner(hj.AdaptiveTrainer(alpha=1e-5), _Flat, rounds=2, records=rec)
    assert files() == before  # refused before anything was written
    with RunRecords(tmp_path) as rec:
        out = hj.budget.run_planner(hj.AdaptiveTrainer(alpha=1e-5), _Flat, rounds=2,
                                    records=rec, on_mismatch="replace")
    assert out["trials"] == 2
    run = hj.records.read_run(tmp_path)
    assert "planner" in run["meta"]
    assert run["summaries"]["trial_000"]["observed"] == 0


def test_patience_counts_rounds_of_successive_halving_not_their_trials():
    # a flat metric at zero cost weight: the first round sets the elite, then nothing
    # improves; every round of 4 trials (halving 2) counts once against patience 3
    for halving in (0, 2):
        trainer = hj.AdaptiveTrainer(seed=0, patience=3, alpha=0.0)
        out = hj.budget.run_planner(trainer, _Flat, rounds=10, halving=halving)
        assert out["trials"] == 4 * 2**halving, halving  # 1 + patience rounds
        assert trainer.done


def test_a_budget_that_failed_is_not_planned_again():
    trainer = hj.AdaptiveTrainer(seed=0, patience=20)
    failed = []
    for _ in range(5):  # every run fails, the start budget first
        p = trainer.plan()
        assert p not in failed
        failed.append(p)
        trainer.observe(-math.inf, p["batch_size"] * p["epochs"])
    trainer = hj.AdaptiveTrainer(seed=0, patience=50)
    failed = []
    for _ in range(15):  # long and wide runs fail; the rest follow the curve
        p = trainer.plan()
        assert p not in failed
        if p["epochs"] > 20 and p["width"] > 30:
            failed.append(p)
            trainer.observe(-math.inf, p["batch_size"] * p["epochs"])
        else:
            trainer.observe(curve(p), p["batch_size"] * p["epochs"])
    assert trainer.best() is not None
