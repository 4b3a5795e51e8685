"""The digits task, the quickstart example and the ``hagfish demo`` command."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax import cli, demo
from hagfish_jax.tasks import digits

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    return digits.load_digits_split(seed=0)


@pytest.fixture(scope="module")
def task(data):
    return digits.make_task(data, hidden=(16,), steps_per_window=5)


@pytest.fixture(scope="module")
def state(task):
    return jax.jit(task.init)(jax.random.key(0), task.default_hparams)


@pytest.fixture(scope="module")
def window_loss(task):
    """A jitted window whose traces are counted across every test that uses it."""
    traces = []

    @jax.jit
    def fn(s):
        traces.append(1)
        return task.train_window(s, jax.random.key(7))[1]["loss"]

    fn.traces = traces
    return fn


def read_run(out):
    """``(summary, rows)`` of a run directory: every member's rows, window-major."""
    run = hj.records.read_run(out)
    rows = []
    for trial, trial_rows in run["rows"].items():
        member = int(trial.split("_")[1]) if trial.startswith("member_") else 0
        rows += [{**r, "member": member} for r in trial_rows]
    rows.sort(key=lambda r: (r["window"], r["member"]))
    return run["summary"], rows


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(a):
    return {r.tobytes() for r in a}


# -- data ------------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete(data):
    from sklearn.datasets import load_digits

    again = digits.load_digits_split(seed=0)
    for a, b in zip(data, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = digits.load_digits_split(seed=1)
    assert not np.array_equal(data.y_train, other.y_train)

    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    splits = [data.x_train, data.x_val, data.x_test]
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not _rows(a) & _rows(b)
    x_all = (load_digits().data / 16.0).astype(np.float32)
    assert _rows(np.concatenate(splits)) == _rows(x_all)
    assert sum(len(s) for s in splits) == len(x_all)


def test_split_is_stratified(data):
    from sklearn.datasets import load_digits

    overall = np.bincount(load_digits().target, minlength=10) / 1797
    for y in (data.y_train, data.y_val, data.y_test):
        counts = np.bincount(y, minlength=10)
        assert np.all(np.abs(counts - overall * len(y)) <= 1.5), counts
    half = digits.load_digits_split(seed=0, train_fraction=0.5)
    assert abs(len(half.y_train) - len(data.y_train) / 2) <= 1
    counts = np.bincount(half.y_train, minlength=10)
    assert np.all(np.abs(counts - overall * len(half.y_train)) <= 1.5), counts
    np.testing.assert_array_equal(half.y_val, data.y_val)  # val/test do not move


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="val_fraction"):
        digits.load_digits_split(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="train_fraction"):
        digits.load_digits_split(train_fraction=0.0)


def test_missing_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"hagfish-jax\[tasks\]"):
        digits.load_digits_split()


# -- task: hyperparameters are arrays, nothing retraces ----------------------------------


def test_hparams_live_in_the_state(task, state):
    hp = hj.get_hparams(state)
    for name, value in task.default_hparams.items():
        assert hp[name].dtype == jnp.float32
        assert float(hp[name]) == pytest.approx(value)
    assert set(task.space.names) <= set(hp)


def test_windows_do_not_retrace_when_hparams_change(task, state):
    traces = {"train": 0, "eval": 0}

    @jax.jit
    def train_window(s, key):
        traces["train"] += 1
        return task.train_window(s, key)

    @jax.jit
    def evaluate(s):
        traces["eval"] += 1
        return task.evaluate(s)

    s = state
    for w, lr in enumerate([1e-3, 3e-3, 1e-2]):
        # Python floats from the host: set_hparams keeps the stored dtype.
        s = hj.set_hparams(s, {"learning_rate": lr, "dropout_rate": 0.1 * w, "b1": 0.8})
        s, _ = train_window(s, jax.random.key(w))
        evaluate(s)
    assert traces == {"train": 1, "eval": 1}
    assert int(s.step) == 3 * task.steps_per_window


@pytest.mark.parametrize(
    "name, value",
    [
        ("dropout_rate", 0.4),
        ("label_smoothing", 0.2),
        ("learning_rate", 3e-2),
        ("weight_decay", 1e-2),
        ("b1", 0.5),
    ],
)
def test_each_hparam_is_read_dynamically(state, window_loss, name, value):
    base = window_loss(state)
    again = window_loss(state)
    changed = window_loss(hj.set_hparams(state, {name: value}))
    assert float(base) == float(again)  # same key, same values: same loss
    assert float(changed) != float(base)
    assert len(window_loss.traces) == 1  # one trace for all five hyperparameters


def test_task_vmaps_over_a_population(task):
    n = 3

    @jax.jit
    def population(key, hp):
        pop = jax.vmap(task.init)(jax.random.split(key, n), hp)
        pop, metrics = jax.vmap(task.train_window)(pop, jax.random.split(key, n))
        return pop, metrics, jax.vmap(task.evaluate)(pop), jax.vmap(task.test_accuracy)(pop)

    hp = task.space.sample(jax.random.key(1), n)
    pop, metrics, evals, test = population(jax.random.key(0), hp)
    np.testing.assert_allclose(hj.get_hparams(pop)["learning_rate"], hp["learning_rate"])
    assert metrics["loss"].shape == evals["score"].shape == test.shape == (n,)
    assert len(np.unique(np.asarray(metrics["loss"]))) == n  # members differ


def test_cnn_trains(data):
    task = digits.make_task(data, model="cnn", hidden=(16,), steps_per_window=5)

    @jax.jit
    def one_window(key):
        state = task.init(key, {"learning_rate": 1e-2})
        state, metrics = task.train_window(state, key)
        return metrics["loss"], task.evaluate(state)["score"]

    loss, score = one_window(jax.random.key(0))
    assert np.isfinite(float(loss))
    assert 0.0 <= float(score) <= 1.0


def test_make_task_rejects_bad_arguments(data):
    with pytest.raises(ValueError, match="model"):
        digits.make_task(data, model="resnet")
    with pytest.raises(ValueError, match="batch_size"):
        digits.make_task(data, batch_size=0)


# -- the demo and the example ---------------------------------------------------------


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
    assert summary["best_val_accuracy"] == pytest.approx(best)
    assert summary["best_val_accuracy"] > 0.5  # chance is 0.1
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["ensemble_test_accuracy"] > 0.3
    assert sum(summary["ensemble_weights"]) == pytest.approx(1.0, abs=1e-3)
    assert summary["exploits"] == sum(int(r["parent"]) != int(r["member"]) for r in rows)
    assert summary["exploits"] >= 1  # one member replaced per generation at N=4
    assert digits.space.contains(summary["best_hparams"])
    run = hj.records.read_run(out)
    exploits = run["events"]
    assert len(exploits) == summary["exploits"] and exploits[0]["kind"] == "exploit"
    assert run["best"]["best_val_score"] == pytest.approx(best)
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
    assert summary["best_val_accuracy"] == pytest.approx(best)


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
    assert summary["best_val_accuracy"] == pytest.approx(best)
    assert summary["best_val_accuracy"] > 0.6  # chance is 0.1
    assert summary["test_accuracy"] > 0.6
    assert set(summary["best_hparams"]) == set(digits.space.names)
    assert digits.space.contains(summary["best_hparams"])


def test_cli_without_arguments_prints_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_chunks_divide_the_windows():
    for windows in (1, 6, 7, 40, 97, 100):
        chunk = demo.chunk_size(windows)
        assert windows % chunk == 0 and 1 <= chunk <= max(1, windows // 10)


def test_quickstart_example_runs():
    quickstart = load_example("quickstart")
    result = quickstart.run(windows=4, steps_per_window=16, hidden=(32,), verbose=False)
    assert result["rows"]["val_acc"].shape == (4,)
    assert result["best_val_accuracy"] > 0.3
    assert 0.0 <= result["test_accuracy"] <= 1.0


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
    ],
)
def test_cli_rejects_bad_options_before_any_work(argv, word, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 2
    assert word in capsys.readouterr().err


def test_population_program_keeps_the_best_member_and_vmaps_the_task(task):
    tuner = hj.pbt(task.space)
    init, generation = demo.population_program(task, tuner, 4)
    carry = jax.jit(init)(jax.random.key(0), task.space.sample(jax.random.key(1), 4))
    run = jax.jit(lambda c: jax.lax.scan(generation, c, None, length=3))
    carry, rows = run(carry)
    assert rows["score"].shape == (3, 4) and rows["parent"].shape == (3, 4)
    assert float(carry.best.score) == pytest.approx(float(np.max(rows["score"])))
    # the hyperparameters in each row are the ones in force: generation 0 = the samples
    np.testing.assert_allclose(
        rows["learning_rate"][0], task.space.sample(jax.random.key(1), 4)["learning_rate"]
    )


def test_pbt_example_runs(capsys):
    example = load_example("pbt_digits")
    scores, parents = example.run(n=4, generations=3, steps_per_window=8, hidden=(16,))
    assert scores.shape == (3, 4) and parents.shape == (3, 4)
    assert int((parents != jnp.arange(4)).sum()) == 3  # one of four replaced per generation
    assert "best member" in capsys.readouterr().out


def test_bayes_example_runs(capsys):
    example = load_example("bayes_in_training")
    rows, best, test = example.run(windows=6, steps_per_window=8, hidden=(16,))
    assert rows["score"].shape == (6,)
    assert best == pytest.approx(float(np.max(rows["score"])))
    assert 0.0 <= test <= 1.0
    assert "best val accuracy" in capsys.readouterr().out


def test_a_divergent_start_is_detected_and_restarted(data):
    """lr 1.0 kills the network in one window; the guard restarts it from the initial
    state at a tenth of the rate, and it learns (a kept dead network scores ~0.1)."""
    task = digits.make_task(data, hidden=(32,))
    tuner = hj.guard(hj.finite_difference(task.space.subspace(["learning_rate"])))

    @jax.jit
    def run(key):
        carry = digits.demo_init(task, tuner, key, {"learning_rate": 1.0})
        carry, rows = jax.lax.scan(digits.demo_window(task, tuner), carry, None, length=6)
        return carry, rows

    carry, rows = run(jax.random.key(0))
    assert bool(rows["rollback"][0]) and np.isnan(rows["score"][0])  # window 1 diverged
    assert rows["learning_rate"][1] == pytest.approx(0.1)
    assert float(carry.snap.score) > 0.7
    assert int(carry.tuner_state.divergences) >= 1
    # a healthy window and a far too slow one (loss near a uniform guess, falling)
    # are not flagged
    window = jax.jit(task.train_window)
    for lr in (1e-3, 1e-6):
        state = task.init(jax.random.key(0), {"learning_rate": lr})
        assert not bool(window(state, jax.random.key(1))[1]["diverged"])
