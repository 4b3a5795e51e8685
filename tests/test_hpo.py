"""``hagfish hpo``: the rounds, their records, the out-of-memory step-down, resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import time
from pathlib import Path

import jax
import pytest

from hagfish_jax.shell.cli import main
from hagfish_jax.shell.hpo import (
    Executor,
    HpoConfig,
    TrialFailed,
    is_oom,
    rounds,
    run_hpo,
    task_family,
)

TINY = dict(task="breast_cancer", hidden=(8,), epochs=3, patience=2)
TRIAL_FILES = ("proposal.json", "metrics_epoch.csv", "analysis.json", "summary.json")


@pytest.fixture(scope="module")
def family():
    """One task family (and its compiled functions) for the module's in-process runs."""
    return task_family(HpoConfig(**TINY))


def _read(path: Path):
    return json.loads(path.read_text())


def test_rounds_write_the_records(tmp_path, family):
    out = tmp_path / "run"
    result = run_hpo(HpoConfig(rounds=3, **TINY), out, family=family)
    assert sorted(result.summaries) == ["trial_000", "trial_001", "trial_002"]
    for name in result.summaries:
        tdir = out / "trials" / name
        for f in TRIAL_FILES:
            assert (tdir / f).exists(), (name, f)
        for png in ("loss.png", "val_loss.png", "accuracy.png", "f1.png", "combined.png"):
            assert (tdir / png).stat().st_size > 0
        summary = _read(tdir / "summary.json")
        assert summary["val_and_test_same_dataset"] is False
        assert 0.0 <= summary["test_accuracy"] <= 1.0 and 0.0 <= summary["test_f1"] <= 1.0
        hp = summary["effective_hparams"]
        assert set(hp) == {"optimizer", "learning_rate", "batch_size", "weight_decay",
                           "label_smoothing"}
        with open(tdir / "metrics_epoch.csv") as f:
            rows = list(csv.DictReader(f))
        assert 1 <= len(rows) <= 3
        assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "train_f1",
                "val_f1", "learning_rate"} <= set(rows[0])
        analysis = _read(tdir / "analysis.json")
        assert {"flags", "features", "keywords", "notes"} <= set(analysis)
        json.dumps(analysis, allow_nan=False)  # features are plain numbers
    # each round after the first trains the council's advice, not the start again
    proposals = [_read(out / "trials" / n / "proposal.json") for n in result.summaries]
    assert proposals[0]["rationale"] == "starting configuration"
    assert proposals[1]["hparams"] != proposals[0]["hparams"]
    assert (out / "trials_summary.csv").exists()
    best = _read(out / "best_overall.json")
    accs = [s["best_val_accuracy"] for s in result.summaries.values()]
    assert best["best_val_accuracy"] == max(accs)


def test_bad_configuration_is_refused_before_any_work(tmp_path):
    for bad in (dict(rounds=0), dict(epochs=-1), dict(advisor="oracle"),
                dict(search="web"), dict(task="imagenet"), dict(task="breast_cancer",
                                                                model="cnn")):
        with pytest.raises(ValueError):
            run_hpo(HpoConfig(**bad), tmp_path / "never")
    assert not (tmp_path / "never").exists()


def _oom_family(limit: int, space, n_train=200):
    """Tasks whose training raises XLA's out-of-memory error above ``limit``."""
    build, _, _ = task_family(HpoConfig(**TINY))

    def oom_build(batch_size: int):
        task = build(min(batch_size, 64))
        if batch_size <= limit:
            return task

        def train_window(state, key):
            raise RuntimeError(
                f"RESOURCE_EXHAUSTED: Out of memory allocating a batch of {batch_size}"
            )

        return dataclasses.replace(task, train_window=train_window)

    return oom_build, space, n_train


def test_out_of_memory_steps_the_batch_size_down(tmp_path, family):
    _, space, _ = family
    build, _, _ = _oom_family(64, space)
    ex = Executor(build, space, epochs=2, patience=2)
    hp = {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 256,
          "weight_decay": 1e-4, "label_smoothing": 0.0}
    trial = ex.run(hp, jax.random.key(0))
    oom = trial.summary["oom_adjusted"]
    assert oom["requested_batch_size"] == 256 and oom["batch_size"] == 64
    assert [a["batch_size"] for a in oom["attempts"]] == [256, 128]
    assert trial.summary["effective_hparams"]["batch_size"] == 64
    assert all("RESOURCE_EXHAUSTED" in a["error"] for a in oom["attempts"])


def test_a_trial_that_fails_at_every_size_is_recorded_and_rounds_go_on(tmp_path, family):
    _, space, _ = family
    build, _, _ = _oom_family(0, space)  # every size runs out of memory
    ex = Executor(build, space, epochs=2, patience=2)
    with pytest.raises(TrialFailed) as info:
        ex.run({"batch_size": 128, "learning_rate": 1e-3}, jax.random.key(0))
    assert [a["batch_size"] for a in info.value.attempts] == [128, 64, 32]
    result = run_hpo(HpoConfig(rounds=2, **TINY), tmp_path / "run", family=(build, space, 200))
    assert result.failed == ["trial_000", "trial_001"]
    assert result.summaries["trial_001"]["status"] == "failed"
    kinds = [json.loads(line)["kind"] for line in open(tmp_path / "run" / "events.jsonl")]
    assert kinds.count("trial_failed") == 2


def test_an_error_that_is_not_out_of_memory_fails_at_once(family):
    _, space, _ = family
    build, _, _ = task_family(HpoConfig(**TINY))

    def broken(batch_size):
        task = build(batch_size)

        def train_window(state, key):
            raise ValueError("a bug in the user's step")

        return dataclasses.replace(task, train_window=train_window)

    ex = Executor(broken, space, epochs=2, patience=2)
    with pytest.raises(TrialFailed) as info:
        ex.run({"batch_size": 128}, jax.random.key(0))
    assert len(info.value.attempts) == 1 and "a bug" in info.value.attempts[0]["error"]
    # a user-marked retryable error steps down like out of memory
    ex = Executor(broken, space, epochs=2, patience=2, retryable=lambda e: "bug" in str(e))
    with pytest.raises(TrialFailed) as info:
        ex.run({"batch_size": 128}, jax.random.key(0))
    assert [a["batch_size"] for a in info.value.attempts] == [128, 64, 32]
    assert is_oom(MemoryError()) and not is_oom(ValueError("x"))


def test_the_optimizer_switch_does_not_retrace(family):
    build, space, _ = family
    ex = Executor(build, space, epochs=2, patience=2)
    base = {"learning_rate": 1e-2, "batch_size": 64, "weight_decay": 1e-4,
            "label_smoothing": 0.0}
    a = ex.run({**base, "optimizer": "adam"}, jax.random.key(0))
    train = ex._functions(64)[1]
    size = train._cache_size()
    b = ex.run({**base, "optimizer": "sgd"}, jax.random.key(0))
    assert train._cache_size() == size
    assert a.summary["best_val_loss"] != b.summary["best_val_loss"]


def _records(out: Path) -> dict:
    """Everything a run directory says, less the wall times."""
    found = {}
    for path in sorted(out.rglob("*")):
        if path.suffix in (".json", ".csv", ".jsonl") and path.name != "run.json":
            text = path.read_text()
            if path.suffix == ".json":
                data = json.loads(text)
                if isinstance(data, dict):
                    data.pop("wall_s", None)
                text = json.dumps(data, sort_keys=True)
            elif path.suffix == ".csv":
                rows = list(csv.DictReader(text.splitlines()))
                text = json.dumps([{k: v for k, v in r.items() if k != "wall_s"} for r in rows])
            found[str(path.relative_to(out))] = text
    return found


def kill_then_resume(cmd: list, env: dict, whole: Path, killed: Path) -> None:
    """Run ``cmd`` whole into ``whole``; into ``killed``, kill it once trial 1 has its
    proposal (before trial 2 ends), then run it again to the end."""
    subprocess.run([*cmd, "--out", str(whole)], check=True, env=env, timeout=300)
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env)
    marker = killed / "trials" / "trial_001" / "proposal.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (killed / "trials" / "trial_002" / "summary.json").exists()
    subprocess.run([*cmd, "--out", str(killed)], check=True, env=env, timeout=300)


def test_cli_refuses_bad_options_before_any_work(tmp_path, capsys, monkeypatch):
    out = tmp_path / "never"
    assert main(["hpo", "--rounds", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "hagfish hpo: --rounds must be >= 1, got 0"
    assert main(["hpo", "--consult-turns", "-1", "--out", str(out)]) == 2
    assert "--consult-turns must be >= 1" in capsys.readouterr().err
    args = ["hpo", "--task", "breast_cancer", "--train-fraction", "0.5", "--out", str(out)]
    assert main(args) == 2  # not silently ignored
    assert "--train-fraction applies to --task digits" in capsys.readouterr().err
    for var in ("HAGFISH_LLM_BASE_URL", "HAGFISH_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["hpo", "--advisor", "llm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "HAGFISH_LLM_BASE_URL" in err and "--llm-base-url" in err
    assert not out.exists()


def test_the_cli_says_when_advisors_fell_back_to_offline_advice(tmp_path, capsys):
    from hagfish_jax.shell import hpo_cli
    from hagfish_jax.shell.records import RunRecords

    records = RunRecords(tmp_path / "run", meta={"kind": "hpo"})
    hpo_cli._say_fallbacks(records.path)
    assert capsys.readouterr().err == ""  # nothing failed: nothing said
    records.event("fallback", trial="trial_000", role="analyst", error="no connection to X")
    records.event("fallback", trial="trial_001", role="supervisor", error="no connection to X")
    records.close()
    hpo_cli._say_fallbacks(tmp_path / "run")
    err = capsys.readouterr().err
    assert "2 advisor call(s) failed and fell back to offline advice" in err
    assert "analyst: no connection to X" in err and "events.jsonl" in err


def test_a_kill_while_the_council_advises_leaves_the_records_of_a_whole_run(
    tmp_path, family, monkeypatch
):
    config = HpoConfig(rounds=2, **TINY)
    run_hpo(config, tmp_path / "whole", family=family, plots=False)
    killed, writes = tmp_path / "killed", []
    real = rounds._append

    def dying_append(path, text):  # killed halfway through trial 1's second advice line
        if path.name == "advice.jsonl" and path.parent.name == "trial_001":
            writes.append(text)
            if len(writes) == 2:
                with open(path, "a") as f:
                    f.write(text[: len(text) // 2])
                raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(rounds, "_append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        run_hpo(config, killed, family=family, plots=False)
    assert not (killed / "trials" / "trial_001" / "proposal.json").exists()
    monkeypatch.setattr(rounds, "_append", real)
    run_hpo(config, killed, family=family, plots=False)  # the run again, to its end
    advice = (killed / "trials" / "trial_001" / "advice.jsonl").read_text()
    assert advice == (tmp_path / "whole" / "trials" / "trial_001" / "advice.jsonl").read_text()
    assert _records(killed) == _records(tmp_path / "whole")
