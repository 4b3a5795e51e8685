"""Run records: atomic writes, resume without duplicates, every file parses; the
planner's trials with successive halving, recorded and resumed."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest

import hagfish_jax as hj
from hagfish_jax import budget
from hagfish_jax.shell.records import RunRecords, read_run


def rows(trial_windows, start=0):
    return [
        {"window": w, "val_accuracy": 0.5 + 0.01 * w, "train_loss": 1.0 / (w + 1), "cost": 8.0}
        for w in range(start, start + trial_windows)
    ]


def test_every_file_parses_and_numbers_come_back(tmp_path):
    rec = RunRecords(tmp_path / "run", meta={"task": "toy", "hparams": ["learning_rate"]})
    rec.log("trial_000", rows(3))
    rec.log("trial_001", [{**r, "val_accuracy": float("nan")} for r in rows(2)])
    rec.event("exploit", generation=1, member=0, parent=1)
    rec.finish_trial("trial_000", {"best_val_score": 0.52, "cost": 24.0, "hparams": {"lr": 1e-3}})
    rec.finish_trial("trial_001", {"best_val_score": float("nan"), "cost": 16.0})
    rec.write_summary({"trials": 2})
    run = read_run(tmp_path / "run")
    assert run["meta"]["task"] == "toy" and run["summary"] == {"trials": 2}
    assert [r["window"] for r in run["rows"]["trial_000"]] == [0, 1, 2]
    assert isinstance(run["rows"]["trial_000"][0]["window"], int)
    assert math.isnan(run["rows"]["trial_001"][0]["val_accuracy"])
    assert run["events"] == [{"kind": "exploit", "generation": 1, "member": 0, "parent": 1}]
    assert run["best"]["trial"] == "trial_000"  # NaN never best
    with open(tmp_path / "run" / "trials_summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["trial"] for t in table] == ["trial_000", "trial_001"]
    assert table[0]["hparams.lr"] == "0.001"
    for path in (tmp_path / "run").rglob("*.json*"):
        for line in path.read_text().splitlines() if path.suffix == ".jsonl" else [None]:
            json.loads(line) if line is not None else json.loads(path.read_text())


def test_resume_does_not_duplicate_rows_or_events(tmp_path):
    rec = RunRecords(tmp_path)
    assert rec.log("member_00", rows(4)) == 4
    assert rec.event("rollback", window=2)
    again = RunRecords(tmp_path)  # a restarted run replays its last windows
    assert again.last_window("member_00") == 3
    assert again.log("member_00", rows(6, start=2)) == 4  # windows 2, 3 skipped
    assert not again.event("rollback", window=2)
    assert [r["window"] for r in read_run(tmp_path)["rows"]["member_00"]] == list(range(8))
    assert len(read_run(tmp_path)["events"]) == 1


def test_a_window_repeated_within_one_call_is_recorded_once(tmp_path):
    rec = RunRecords(tmp_path)
    assert rec.log("member_00", rows(2) + rows(2)) == 2  # a replayed batch, twice over
    assert rec.log("member_01", [*rows(1), *rows(1), *rows(1, start=1)]) == 2
    assert [r["window"] for r in rec.rows("member_00")] == [0, 1]
    run = read_run(tmp_path)["rows"]
    assert [r["window"] for r in run["member_00"]] == [0, 1]
    assert [r["window"] for r in run["member_01"]] == [0, 1]


def test_a_crash_between_write_and_rename_leaves_the_old_file(tmp_path, monkeypatch):
    rec = RunRecords(tmp_path)
    rec.log("trial_000", rows(2))
    rec.finish_trial("trial_000", {"best_val_score": 0.51})
    before = (tmp_path / "trials" / "trial_000" / "metrics.csv").read_text()

    def crash(src, dst):
        raise OSError("killed between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        rec.finish_trial("trial_000", {"best_val_score": 0.99})
    monkeypatch.undo()
    assert (tmp_path / "trials" / "trial_000" / "metrics.csv").read_text() == before
    assert read_run(tmp_path)["summaries"]["trial_000"]["best_val_score"] == 0.51
    # a temporary file a killed process could not remove is ignored, then cleaned up
    stray = tmp_path / "trials" / "trial_000" / ".tmp-metrics.csv.abc"
    stray.write_text("window,val_acc")
    reopened = RunRecords(tmp_path)
    assert not stray.exists()
    assert reopened.log("trial_000", rows(3, start=2)) == 3
    assert reopened.last_window("trial_000") == 4


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda r: r.log("bad name", rows(1)), "trial names"),
        (lambda r: r.log("t", [{"val_accuracy": 1.0}]), "window"),
        (lambda r: (r.log("t", rows(1)), r.log("t", [{"window": 5, "extra": 1}])), "extra"),
    ],
)
def test_bad_rows_are_rejected_before_writing(tmp_path, call, word):
    with pytest.raises(ValueError, match=word):
        call(RunRecords(tmp_path))


class ToyTrial:
    """Accuracy rises with epochs x width / batch; cost = batch x epochs."""

    def __init__(self, params):
        self.params = params
        self.metric = -math.inf
        self.cost = 0.0
        self.epochs = 0

    def advance(self, epochs):
        out = []
        for _ in range(epochs):
            self.epochs += 1
            self.cost += self.params["batch_size"]
            steps = self.epochs * 400 / self.params["batch_size"]
            acc = 0.97 - 0.4 * math.exp(-steps / 200) - 0.05 * math.exp(-self.params["width"] / 16)
            self.metric = max(self.metric, acc)
            out.append({"window": self.epochs - 1, "val_accuracy": acc, "cost": self.cost})
        return out

    def summary(self):
        return {"test_score": self.metric - 0.01}


def test_planner_trials_with_halving_account_every_epoch(tmp_path):
    trainer = hj.AdaptiveTrainer(alpha=2e-5, seed=0)
    started = []

    def start(params):
        started.append(ToyTrial(params))
        return started[-1]

    res = budget.run_planner(
        trainer, start, rounds=2, records=RunRecords(tmp_path), halving=2, stop_when_done=False
    )
    assert res["trials"] == 8 == len(started)
    assert res["total_cost"] == pytest.approx(sum(t.cost for t in started))
    assert sum(o["pruned"] for o in res["outcomes"]) == 6  # 4 -> 2 -> 1, twice
    full = [o for o in res["outcomes"] if not o["pruned"]]
    assert all(o["params"]["epochs"] == o["planned"]["epochs"] for o in full)
    for o in res["outcomes"]:  # pruned runs report the epochs they ran
        assert o["params"]["epochs"] <= o["planned"]["epochs"]
    assert len(trainer.history) == 8
    run = read_run(tmp_path)
    assert len([e for e in run["events"] if e["kind"] == "prune"]) == 6
    assert run["best"]["reward"] == pytest.approx(max(o["reward"] for o in res["outcomes"]))


def test_planner_resume_replays_finished_trials_and_continues(tmp_path):
    def run(folder, rounds, start=ToyTrial):
        return budget.run_planner(
            hj.AdaptiveTrainer(seed=1),
            start,
            rounds=rounds,
            records=RunRecords(tmp_path / folder),
            stop_when_done=False,
        )

    whole = run("a", 5)
    run("b", 3)  # the same run stopped after 3 rounds, then restarted on its directory
    calls = []

    def counted(params):
        calls.append(params)
        return ToyTrial(params)

    resumed = run("b", 5, counted)
    assert len(calls) == 2  # only the two new rounds trained
    assert [o["params"] for o in resumed["outcomes"]] == [o["params"] for o in whole["outcomes"]]
    a, b = read_run(tmp_path / "a"), read_run(tmp_path / "b")
    assert a["rows"] == b["rows"] and a["best"] == b["best"]


def test_another_run_in_the_same_directory_is_refused_or_replaced(tmp_path):
    first = RunRecords(tmp_path, meta={"config": {"seed": 0}, "task": "toy"})
    first.log("trial_000", rows(3))
    first.event("prune", trial="trial_000")
    RunRecords(tmp_path, meta={"config": {"seed": 0}})  # the same run: continues
    with pytest.raises(ValueError, match="config"):
        RunRecords(tmp_path, meta={"config": {"seed": 1}})
    assert read_run(tmp_path)["rows"]["trial_000"]  # nothing was touched
    again = RunRecords(tmp_path, meta={"config": {"seed": 1}}, on_mismatch="replace")
    run = read_run(tmp_path)
    assert run["rows"] == {} and run["events"] == []
    assert run["meta"] == {"config": {"seed": 1}}  # the old task is gone too
    assert again.log("trial_000", rows(3)) == 3
    with pytest.raises(ValueError, match="on_mismatch"):
        RunRecords(tmp_path, on_mismatch="merge")


def test_a_trial_continues_in_the_metrics_file_it_was_recorded_in(tmp_path):
    with RunRecords(tmp_path, metrics_name="metrics_epoch.csv") as rec:
        rec.log("trial_000", [{"window": w, "val_accuracy": 0.5 + w / 10} for w in (0, 1)])
    with RunRecords(tmp_path) as rec:  # opened with the other name, metrics.csv
        assert rec.log("trial_000", [{"window": 2, "val_accuracy": 0.7}]) == 1
        assert rec.log("trial_001", [{"window": 0, "val_accuracy": 0.1}]) == 1
    trials = tmp_path / "trials"
    assert sorted(p.name for p in (trials / "trial_000").iterdir()) == ["metrics_epoch.csv"]
    assert sorted(p.name for p in (trials / "trial_001").iterdir()) == ["metrics.csv"]
    rows = read_run(tmp_path)["rows"]
    assert [r["window"] for r in rows["trial_000"]] == [0, 1, 2]
    assert [r["val_accuracy"] for r in rows["trial_000"]] == [0.5, 0.6, 0.7]
    assert rows["trial_001"] == [{"window": 0, "val_accuracy": 0.1}]
