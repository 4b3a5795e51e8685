"""The classification tasks (digits): data splits, hyperparameters in the state, no
retrace, vmapped populations, the CNN, bad input, divergence detection."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax.tasks import digits

pytest.importorskip("sklearn")


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


def test_a_divergent_start_is_detected_and_restarted(data):
    """lr 1.0 kills the network in one window; the guard restarts it from the initial
    state at a tenth of the rate, and it learns (a kept dead network scores ~0.1)."""
    task = digits.make_task(data, hidden=(32,))
    tuner = hj.guard(hj.finite_difference(task.space.subspace(["learning_rate"])))

    prog = hj.program.build(task, tuner)

    @jax.jit
    def run(key):
        carry = prog.init(key, {"learning_rate": 1.0})
        return hj.program.scan(prog, carry, 6)

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
