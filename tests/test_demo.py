"""``hagfish demo`` through the Loop, its run directory and the CLI's checks."""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax import cli
from hagfish_jax.tasks import digits

pytest.importorskip("sklearn")


def read_run(out):
    """``(summary, rows)`` of a run directory: every member's rows, window-major."""
    run = hj.records.read_run(out)
    rows = []
    for trial, trial_rows in run["rows"].items():
        member = int(trial.split("_")[1]) if trial.startswith("member_") else 0
        rows += [{**r, "member": member} for r in trial_rows]
    rows.sort(key=lambda r: (r["window"], r["member"]))
    return run["summary"], rows


def test_pbt_demo_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = [
        "demo",
        "--population",
        "4",
        "--generations",
        "4",
        "--steps-per-window",
        "12",
        "--hidden",
        "16",
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    summary, rows = read_run(out)
    assert len(rows) == 4 * 4
    assert [(int(r["window"]), int(r["member"])) for r in rows[:5]] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
    ]
    columns = {"val_accuracy", "train_accuracy", "val_loss", "train_loss", "val_f1", "cost"}
    assert columns | {"parent", "learning_rate", "dropout_rate"} <= set(rows[0])
    assert summary["tuner"] == "pbt" and summary["population"] == 4
    assert summary["total_steps"] == 4 * 4 * 12
    assert summary["total_cost"] == pytest.approx(sum(r["cost"] for r in rows))
    best = max(float(r["val_accuracy"]) for r in rows)
    assert summary["best_score"] == pytest.approx(best)
    assert summary["best_score"] > 0.5  # chance is 0.1
    assert 0.0 <= summary["test_score"] <= 1.0
    assert summary["ensemble_test_score"] > 0.3
    assert sum(summary["ensemble_weights"]) == pytest.approx(1.0, abs=1e-3)
    assert summary["exploits"] == sum(int(r["parent"]) != int(r["member"]) for r in rows)
    assert summary["exploits"] >= 1  # one member replaced per generation at N=4
    assert digits.space.contains(summary["best_hparams"])
    run = hj.records.read_run(out)
    exploits = run["events"]
    assert len(exploits) == summary["exploits"] and exploits[0]["kind"] == "exploit"
    assert run["best"]["best_val_score"] == pytest.approx(best)
    # best_overall.json names the member the summary does, with its test score
    assert run["best"]["trial"] == f"member_{summary['best_member']:02d}"
    assert run["best"]["test_score"] == summary["test_score"]
    assert len(run["summaries"]) == 4 and run["meta"]["hparams"] == list(digits.space.names)
    if importlib.util.find_spec("matplotlib"):
        assert (out / "lineage.png").stat().st_size > 0 and (out / "curves.png").exists()
    # the same directory again: nothing is duplicated
    assert cli.main(argv) == 0
    assert len(read_run(out)[1]) == 4 * 4
    # another run into it replaces the old records instead of mixing with them
    assert cli.main([*argv, "--seed", "1"]) == 0
    summary, rows = read_run(out)
    assert summary["seed"] == 1 and len(rows) == 4 * 4
    best = max(float(r["val_accuracy"]) for r in rows)
    assert summary["best_score"] == pytest.approx(best)


def test_successive_halving_on_breast_cancer(tmp_path):
    out = tmp_path / "sh"
    argv = [
        "demo",
        "--task",
        "breast_cancer",
        "--population",
        "8",
        "--generations",
        "7",
        "--halving",
        "2",
        "--hidden",
        "8",
        "--steps-per-window",
        "4",
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    summary, rows = read_run(out)
    assert summary["stages"] == [[8, 1], [4, 2], [2, 4]]
    per_window = [sum(1 for r in rows if r["window"] == w) for w in range(7)]
    assert per_window == [8, 4, 4, 2, 2, 2, 2]  # survivors only
    assert summary["total_cost"] == pytest.approx(sum(r["cost"] for r in rows))
    prunes = hj.records.read_run(out)["events"]
    pruned = {e["member"] for e in prunes if e["kind"] == "prune"}
    assert len(pruned) == 6 and not pruned & set(summary["final_members"])
    # the survivors of the first cut were the better half by last validation score
    first = {r["member"]: r["val_accuracy"] for r in rows if r["window"] == 0}
    kept = {r["member"] for r in rows if r["window"] == 1}
    assert min(first[m] for m in kept) >= max(first[m] for m in set(first) - kept)
    # members tie on 114 validation images: best_overall.json still names the summary's
    assert hj.records.read_run(out)["best"]["trial"] == f"member_{summary['best_member']:02d}"


def test_guarded_demo_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = [
        "demo",
        "--tuner",
        "guard",
        "--windows",
        "6",
        "--steps-per-window",
        "16",
        "--hidden",
        "32",
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(argv) == 0

    summary, rows = read_run(out)
    assert len(rows) == 6
    assert [int(r["window"]) for r in rows] == list(range(6))
    assert {"val_accuracy", "train_accuracy", "val_loss", "learning_rate"} <= set(rows[0])
    assert summary["tuner"] == "guard(finite_difference)"
    assert summary["windows"] == 6 and summary["steps_per_window"] == 16
    best = max(float(r["val_accuracy"]) for r in rows)
    assert summary["best_score"] == pytest.approx(best)
    assert summary["best_score"] > 0.6  # chance is 0.1
    assert summary["test_score"] > 0.6
    assert set(summary["best_hparams"]) == set(digits.space.names)
    assert digits.space.contains(summary["best_hparams"])


def test_cli_without_arguments_prints_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, word",
    [
        (["demo", "--windows", "0"], "--windows"),
        (["demo", "--population", "1"], "--population"),
        (["demo", "--steps-per-window", "0"], "--steps-per-window"),
        (["demo", "--tuner", "bayes"], "--tuner"),
        (["demo", "--halving", "4"], "halving"),  # 16 members halve 3 times at most
        (["demo", "--tuner", "guard", "--halving", "1"], "--halving"),
        (["demo", "--task", "breast_cancer", "--model", "cnn"], "breast_cancer"),
        # options a task does not take are refused, not recorded and ignored
        (["demo", "--task", "cartpole", "--hidden", "4"], "takes no --hidden"),
        (["demo", "--task", "cartpole", "--steps-per-window", "3"], "--steps-per-window"),
    ],
)
def test_cli_rejects_bad_options_before_any_work(argv, word, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 2
    assert word in capsys.readouterr().err


def test_the_demo_is_the_loop_over_the_program():
    """hj.demo.run drives hj.Loop; its best member is the program's, kept on device."""
    run = hj.demo.run("digits", population=4, windows=3, hidden=(16,), steps_per_window=5)
    carry = run.result.carry
    assert run.summary.population == 4 and len(run.rows) == 4 * 3
    scores = [r["val_accuracy"] for r in run.rows]
    assert float(carry.best.score) == pytest.approx(max(scores))
    assert run.summary.best_score == pytest.approx(max(scores))
    best = max(run.rows, key=lambda r: r["val_accuracy"])
    assert (run.summary.best_member, run.summary.best_window) == (best["member"], best["window"])
    # the hyperparameters in each row are the ones in force: window 0 = the samples drawn
    space = digits.space
    drawn = space.sample(jax.random.split(jax.random.key(0))[0], 4)["learning_rate"]
    np.testing.assert_allclose([r["learning_rate"] for r in run.rows[:4]], drawn, rtol=1e-6)
    # a typed summary: the CLI and the run directory format the same object
    again = hj.demo.RunSummary.from_dict(run.summary.to_dict())
    assert again == run.summary and ("exploits", str(run.summary.exploits)) in again.lines()


def test_a_user_task_of_a_few_lines_runs_like_a_built_in_one(tmp_path):
    """The Task protocol: a user's own model through the same runner and run directory."""
    import jax.numpy as jnp
    import optax

    space = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    target = jnp.array([1.0, -2.0])

    def init(key, hparams):
        w = jax.random.normal(key, (2,))
        return hj.set_hparams({"w": w, "opt": tx.init(w)}, hparams)

    def train_window(state, key):
        g = jax.grad(lambda w: jnp.sum((w - target) ** 2))(state["w"])
        u, opt = tx.update(g, state["opt"], state["w"])
        return {"w": state["w"] + u, "opt": opt}, {}

    task = hj.Task(init=init, train_window=train_window, space=space, name="bowl",
                   evaluate=lambda s: {"score": -jnp.sum((s["w"] - target) ** 2)},
                   default_hparams={"learning_rate": 0.05})
    for tuner in ("pbt", "guard"):
        run = hj.demo.run(task, tuner=tuner, population=4, windows=6)
        assert run.summary.task == "bowl" and run.summary.best_score > -1.0
        out = hj.demo.write_run(tmp_path / tuner, run)
        recorded = hj.records.read_run(out)
        assert recorded["summary"]["best_score"] == run.summary.best_score
        member = "run" if tuner == "guard" else f"member_{run.summary.best_member:02d}"
        assert recorded["best"]["trial"] == member


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"population": 2.5}, "population must be an integer >= 2, got 2.5"),
        ({"population": 1}, "population must be an integer >= 2"),
        ({"windows": 0}, "windows must be an integer >= 1"),
        ({"windows": 2.5}, "windows must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_run_refuses_bad_numbers_before_any_work(kwargs, words):
    with pytest.raises(ValueError, match=words):
        hj.demo.run("digits", **{"windows": 2, **kwargs})


def test_run_refuses_build_options_for_a_task_object():
    task = hj.tasks.make("breast_cancer", hidden=(8,))
    with pytest.raises(ValueError, match="a task object is built already"):
        hj.demo.run(task, windows=2, model="cnn", hidden=(512,))


@pytest.mark.timeout(240)
def test_ctrl_c_stops_the_demo_after_its_window_and_writes_the_run(tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hagfish_jax.shell.cli", "demo", "--task", "breast_cancer",
           "--population", "4", "--windows", "100000", "--hidden", "8", "--quiet",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "trials" / "member_00" / "metrics.csv"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "stopping after this window" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reason"] == "stopped" and 2 <= summary["windows"] < 100000
    best = json.loads((out / "best_overall.json").read_text())
    assert best["trial"] == f"member_{summary['best_member']:02d}"
    assert "best member" in stdout  # the summary was printed
