"""The classification tasks (digits): data splits, hyperparameters in the state, no
retrace, vmapped populations, the CNN, bad input, divergence detection."""

from __future__ import annotations

import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax.tasks import classification, digits

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


# -- optimizer choice: adam and sgd in one program -------------------------------------

# Full-batch steps (every step sees the whole train split, in a shuffled order) let the
# SGD reference below compute the same gradient without repeating the shuffle.
_SWITCH = {"hidden": (16,), "steps_per_window": 2}


@pytest.fixture(scope="module")
def switch_task(data):
    return classification.make_task(
        data, batch_size=len(data.y_train), optimizers=("adam", "sgd"), **_SWITCH
    )


@pytest.fixture(scope="module")
def switch_window(switch_task):
    """A jitted window of the two-optimizer task whose traces are counted."""
    traces = []

    @jax.jit
    def fn(s, key):
        traces.append(1)
        return switch_task.train_window(s, key)

    fn.traces = traces
    return fn


def test_two_optimizers_put_optimizer_in_the_state_and_space(data, switch_task):
    assert switch_task.default_hparams["optimizer"] == 0.0
    assert switch_task.space["optimizer"] == hj.Choice(["adam", "sgd"], dynamic=True)
    assert "optimizer" in switch_task.space.dynamic
    state = switch_task.init(jax.random.key(0), {"optimizer": 1.0})
    hp = hj.get_hparams(state)
    assert hp["optimizer"].dtype == jnp.float32 and float(hp["optimizer"]) == 1.0
    assert switch_task.space.to_python({"optimizer": hp["optimizer"]}) == {"optimizer": "sgd"}
    # the first listed optimizer is the default; the index is fixed (1.0 is sgd)
    sgd_first = classification.make_task(data, hidden=(4,), optimizers=("sgd", "adam"))
    assert sgd_first.default_hparams["optimizer"] == 1.0
    # one optimizer: nothing to switch
    assert "optimizer" not in classification.make_task(data, hidden=(4,)).default_hparams
    assert "optimizer" not in classification.space


def test_adam_branch_is_the_adam_only_task(data, switch_task, switch_window):
    adam_task = classification.make_task(data, batch_size=len(data.y_train), **_SWITCH)
    hp = {"learning_rate": 1e-2, "dropout_rate": 0.2}
    key, window_key = jax.random.key(3), jax.random.key(4)
    want, want_metrics = jax.jit(adam_task.train_window)(adam_task.init(key, hp), window_key)
    got, got_metrics = switch_window(switch_task.init(key, {**hp, "optimizer": 0.0}), window_key)
    # equal up to float rounding (XLA fuses the two programs differently)
    chex.assert_trees_all_close(got.params, want.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(
        got.opt_state.inner_state[0], want.opt_state.inner_state, rtol=1e-4, atol=1e-7
    )
    np.testing.assert_allclose(got_metrics["loss"], want_metrics["loss"], rtol=1e-6)


def test_sgd_branch_matches_a_hand_written_reference(data, switch_task, switch_window):
    hp = {
        "optimizer": 1.0,
        "learning_rate": 0.05,
        "weight_decay": 1e-2,
        "b1": 0.9,
        "dropout_rate": 0.0,
        "label_smoothing": 0.0,
    }
    state = switch_task.init(jax.random.key(5), hp)
    got, _ = switch_window(state, jax.random.key(6))

    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def loss(params):
        logits = switch_task.logits(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    ref = optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(0.05, momentum=0.9))
    params = state.params
    opt_state = ref.init(params)
    for _ in range(switch_task.steps_per_window):
        updates, opt_state = ref.update(jax.grad(loss)(params), opt_state, params)
        params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(got.params, params, rtol=1e-4, atol=1e-6)
    # and it is not what adam does from the same state
    adam, _ = switch_window(hj.set_hparams(state, {"optimizer": 0.0}), jax.random.key(6))
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), adam.params, got.params)
    assert max(jax.tree.leaves(moved)) > 1e-3


def test_sgd_only_task_is_the_sgd_branch(data, switch_task, switch_window):
    sgd_task = classification.make_task(
        data, batch_size=len(data.y_train), optimizers=["sgd"], **_SWITCH
    )
    assert "optimizer" not in sgd_task.default_hparams
    hp = {"learning_rate": 0.05}
    key, window_key = jax.random.key(8), jax.random.key(9)
    want, _ = jax.jit(sgd_task.train_window)(sgd_task.init(key, hp), window_key)
    got, _ = switch_window(switch_task.init(key, {**hp, "optimizer": 1.0}), window_key)
    chex.assert_trees_all_close(got.params, want.params, rtol=1e-5, atol=1e-6)


def test_switching_the_optimizer_does_not_retrace(switch_task, switch_window):
    state = switch_task.init(jax.random.key(0), switch_task.default_hparams)
    losses = []
    for w, opt in enumerate([0.0, 1.0, 0.0, 1.0]):
        state = hj.set_hparams(state, {"optimizer": opt})
        state, metrics = switch_window(state, jax.random.key(w))
        assert float(hj.get_hparams(state)["optimizer"]) == opt
        losses.append(float(metrics["loss"]))
    assert len(switch_window.traces) == 1  # one trace, in this module, for every value
    assert all(np.isfinite(losses))
    assert int(state.step) == 4 * switch_task.steps_per_window


def test_a_population_mixes_optimizers_in_one_program(switch_task):
    hp = {"optimizer": jnp.asarray([0.0, 1.0, 0.0]), "learning_rate": jnp.full((3,), 0.05)}
    keys = jax.random.split(jax.random.key(0), 3)

    @jax.jit
    def population(hp):
        pop = jax.vmap(switch_task.init)(jnp.stack([keys[0]] * 3), hp)
        return jax.vmap(switch_task.train_window)(pop, jnp.stack([keys[1]] * 3))[0]

    pop = population(hp)
    p0, p1, p2 = (jax.tree.map(lambda a, i=i: a[i], pop.params) for i in range(3))
    chex.assert_trees_all_close(p0, p2)  # same optimizer, same run
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p0, p1)
    assert max(jax.tree.leaves(diff)) > 1e-3  # adam and sgd members differ


@pytest.mark.parametrize(
    "optimizers, words",
    [
        ((), "at least one"),
        (("adam", "adam"), "twice"),
        (("adam", "rmsprop"), "unknown optimizer 'rmsprop'"),
        ("adam", "list or tuple"),
    ],
)
def test_make_task_rejects_bad_optimizers(data, optimizers, words):
    with pytest.raises(ValueError, match=words):
        classification.make_task(data, optimizers=optimizers)


def test_hpo_space_is_the_multi_agent_search_space():
    space = classification.hpo_space
    assert "hpo_space" in classification.__all__
    names = {"optimizer", "learning_rate", "batch_size", "weight_decay", "label_smoothing"}
    assert set(space.names) == names
    assert space.structural == frozenset({"batch_size"})
    assert space["optimizer"].values == ("adam", "sgd")
    assert space["batch_size"].values == (32, 64, 128, 256, 512)
    lr, wd = space["learning_rate"], space["weight_decay"]
    assert (lr.low, lr.high, wd.low, wd.high) == (1e-4, 1e-1, 1e-5, 1e-1)
    assert isinstance(lr, hj.LogUniform) and isinstance(wd, hj.LogUniform)
    assert (space["label_smoothing"].low, space["label_smoothing"].high) == (0.0, 0.2)
    sample = space.to_python(space.sample(jax.random.key(0)))
    assert sample["optimizer"] in ("adam", "sgd")
    assert sample["batch_size"] in (32, 64, 128, 256, 512)


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


def test_flat_draws_are_the_shaped_draws():
    """The task draws its dropout masks and shuffle keys flat (faster to compile under a
    population's vmap); with JAX's default threefry they are the values the shaped
    draws gave, so recorded results do not move. The window below (3 epochs, dropout
    0.3) gave these numbers with the (epochs, n_train) and x.shape draws (a6ca115)."""
    from hagfish_jax.core import _draws

    key = jax.random.key(3)
    mask = _draws.uniform(key, (16, 8)) < 0.7
    assert bool((mask == jax.random.bernoulli(key, 0.7, (16, 8))).all())
    task = digits.make_task(digits.load_digits_split(0), hidden=(16,), steps_per_window=40)
    state = task.init(jax.random.key(0), {**task.default_hparams, "dropout_rate": 0.3})
    state, metrics = jax.jit(task.train_window)(state, jax.random.key(1))
    kernel = np.asarray(state.params["params"]["Dense_0"]["kernel"])
    assert float(metrics["loss"]) == pytest.approx(2.3045265674591064, rel=1e-5)
    assert float(kernel.sum()) == pytest.approx(-10.620550155639648, rel=1e-5)


def test_minibatches_cover_each_epoch_once_and_refuse_impossible_sizes():
    idx = np.asarray(classification.minibatches(jax.random.key(1), 12, 4, 7))
    assert idx.shape == (7, 4)
    for epoch in (idx[0:3], idx[3:6]):  # 3 batches of 4 per epoch: every example once
        assert sorted(epoch.ravel().tolist()) == list(range(12))
    for bad in ({"batch_size": 13}, {"batch_size": 0}, {"steps": 0}):
        kw = {"n_train": 12, "batch_size": 4, "steps": 3, **bad}
        with pytest.raises(ValueError, match="minibatches: need"):
            classification.minibatches(jax.random.key(0), **kw)
