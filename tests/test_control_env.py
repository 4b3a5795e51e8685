"""The hyperparameter-control environment and the masked structure it relies on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _support import CONTROL_START, control_space

from hagfish_jax.control import data, tasks
from hagfish_jax.control import env as env_lib
from hagfish_jax.control import features as F
from hagfish_jax.control.masked import MaskedMLP, compute_fraction
from hagfish_jax.core.hparams import get_hparams, set_hparams
from hagfish_jax.core.space import IntUniform, Space
from hagfish_jax.tasks.models import MLP

pytestmark = pytest.mark.timeout(240)

SMALL = control_space()
START = CONTROL_START


@pytest.fixture(scope="module")
def task():
    splits = [data.synthetic_split(i, n_features=8, n_classes=3, n_samples=240) for i in range(2)]
    return tasks.make_task(splits, hparam_space=SMALL, defaults=START, steps_per_window=4)


@pytest.fixture(scope="module")
def env(task):
    return env_lib.HParamEnv(task, windows=4, cost_weight=0.05, random_start=0.0)


@pytest.mark.parametrize("layers,units", [(1, 5), (2, 16), (3, 9)])
def test_masked_mlp_equals_the_small_mlp(layers, units):
    big = MaskedMLP(max_layers=3, max_units=16, num_classes=4)
    small = MLP(hidden=(units,) * layers, num_classes=4)
    x = jax.random.normal(jax.random.key(0), (7, 6))
    kw = dict(dropout_rate=0.0, deterministic=True)
    pb = big.init(jax.random.key(1), x, num_layers=3, units=16, **kw)["params"]
    ps = small.init(jax.random.key(2), x, **kw)["params"]
    # the small model's weights inside the big one; the rest stays random
    pb = jax.tree.map(lambda a: a, pb)
    for i in range(layers):
        k, b = ps[f"Dense_{i}"]["kernel"], ps[f"Dense_{i}"]["bias"]
        layer = pb[f"hidden_{i}"]
        layer["kernel"] = layer["kernel"].at[: k.shape[0], :units].set(k)
        layer["bias"] = layer["bias"].at[:units].set(b)
    out = ps[f"Dense_{layers}"]
    pb["output"]["kernel"] = pb["output"]["kernel"].at[:units].set(out["kernel"])
    pb["output"]["bias"] = out["bias"]
    want = small.apply({"params": ps}, x, **kw)
    got = big.apply({"params": pb}, x, num_layers=layers, units=units, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # and the masked weights do not matter
    other = big.apply(
        {"params": {**pb, "hidden_2": jax.tree.map(lambda a: a + 3.0, pb["hidden_2"])}}
        if layers < 3
        else {"params": pb},
        x,
        num_layers=layers,
        units=units,
        **kw,
    )
    np.testing.assert_allclose(other, want, rtol=1e-5, atol=1e-5)


def test_batch_mask_is_the_gradient_of_the_small_batch():
    split = data.synthetic_split(3, n_features=5, n_classes=2, n_samples=100)
    t = tasks.make_task(split, hparam_space=SMALL, defaults=START, steps_per_window=1)
    hp = {"learning_rate": 0.01, "batch_size": 11, "dropout_rate": 0.1, "num_layers": 2, "units": 8}
    state = t.init(jax.random.key(0), hp)
    # dropout off for the comparison (the mask draws are not reproduced here)
    state = set_hparams(state, {"dropout_rate": 0.0})
    key = jax.random.key(5)
    new, _ = jax.jit(t.train_window)(state, key)
    k_idx, _ = jax.random.split(jax.random.split(key, 1)[0])
    idx = jax.random.randint(k_idx, (32,), 0, len(split.y_train))[:11]
    x, y = jnp.asarray(split.x_train)[idx], jnp.asarray(split.y_train)[idx]

    def loss(params):
        logits = t.logits(state.replace(params=params), x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(loss)(state.params)
    tx = optax.adam(0.01)
    updates, _ = tx.update(grads, tx.init(state.params), state.params)
    want = optax.apply_updates(state.params, updates)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_structural_changes_do_not_retrace(task):
    traces = []

    def window(state, key):
        traces.append(1)
        return task.train_window(state, key)

    step = jax.jit(window)
    state = task.init(jax.random.key(0), {})
    for b, u, layers in [(8, 8, 1), (32, 32, 3), (20, 11, 2)]:
        state = set_hparams(state, {"batch_size": b, "units": u, "num_layers": layers})
        state, metrics = step(state, jax.random.key(b))
        assert np.isfinite(float(metrics["loss"]))
    assert len(traces) == 1
    assert float(get_hparams(state)["units"]) == 11.0


def test_env_obeys_the_funcenv_contract(env):
    assert env.action_space.shape == (len(env.space),)
    # jitted and vmapped: four runs at once, each moved by its own action
    states = jax.jit(jax.vmap(env.initial))(jax.random.split(jax.random.key(2), 4))
    actions = jnp.asarray([[0] * 5, [1] * 5, [2] * 5, [0, 1, 2, 1, 0]])
    keys = jax.random.split(jax.random.key(3), 4)
    moved = jax.jit(jax.vmap(env.transition))(states, actions, keys)
    np.testing.assert_allclose(moved.unit[1], states.unit[1])
    np.testing.assert_allclose(moved.unit[2], np.minimum(states.unit[2] + env.step, 1.0), atol=1e-6)
    obs = jax.vmap(env.observation, in_axes=(0, None))(moved, None)
    assert obs.shape == (4,) + env.observation_space.shape
    for row in np.asarray(obs):
        assert env.observation_space.contains(row)
    rewards = jax.vmap(env.reward, in_axes=(0, 0, 0, None))(states, actions, moved, None)
    assert rewards.shape == (4,) and bool(jnp.all(jnp.isfinite(rewards)))
    assert not bool(jnp.any(jax.vmap(env.terminal, in_axes=(0, None))(moved, None)))
    assert set(env.state_info(moved)) == {"val_loss", "score"}


def test_rewards_on_a_scripted_episode(env, task):
    script = [[2, 1, 1, 2, 1], [2, 0, 1, 1, 0], [1, 1, 0, 0, 2], [0, 2, 2, 1, 1]]
    initial, transition = jax.jit(env.initial), jax.jit(env.transition)
    evaluate, reward = jax.jit(task.evaluate), jax.jit(env.reward, static_argnums=3)
    state = initial(jax.random.key(7))
    first = float(evaluate(state.run)["val_loss"])
    assert float(state.history.first) == pytest.approx(first, rel=1e-6)
    total, costs, losses = 0.0, 0.0, [first]
    for i, action in enumerate(script):
        assert not bool(env.terminal(state, None))
        nxt = transition(state, jnp.asarray(action), jax.random.key(100 + i))
        hp = get_hparams(nxt.run)
        cost = (hp["batch_size"] / 32.0) * (hp["units"] / 32.0) ** 2 * hp["num_layers"] / 3.0
        val = float(evaluate(nxt.run)["val_loss"])
        want = (losses[-1] - val) / first - 0.05 * float(cost)
        got = float(reward(state, jnp.asarray(action), nxt, None))
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
        total, costs = total + got, costs + float(cost)
        losses.append(val)
        state = nxt
    assert bool(env.terminal(state, None))
    # the improvements add up: the return is the share of L1 removed, less the cost
    assert total == pytest.approx((first - losses[-1]) / first - 0.05 * costs, rel=1e-4, abs=1e-5)


def test_a_diverged_loss_counts_as_the_cap():
    h = F.start(2.0, 1.5)
    h = F.push(h, jnp.nan, jnp.inf)
    assert float(h.val[-1]) == pytest.approx(F.LOSS_CAP * 2.0)
    obs = F.observe(h, jnp.zeros(2), 10)
    assert bool(jnp.all(jnp.isfinite(obs)))


def test_compute_fraction_charges_the_largest_setting_one():
    frac = compute_fraction(SMALL)
    top = {"batch_size": 32.0, "units": 32.0, "num_layers": 3.0}
    assert float(frac(top)) == pytest.approx(1.0)
    assert float(frac({"batch_size": 16.0, "units": 16.0, "num_layers": 3.0})) == pytest.approx(
        0.125
    )


def test_gymnasium_api(env):
    gym = env_lib.gym_env(env, seed=0)
    obs, info = gym.reset(seed=0)
    assert np.asarray(obs).shape == env.observation_space.shape
    steps = 0
    terminated = False
    while not terminated:
        obs, reward, terminated, truncated, info = gym.step(np.ones(len(env.space), np.int64))
        steps += 1
        assert np.isfinite(float(reward))
    assert steps == env.windows


def test_bad_arguments_are_refused(task):
    with pytest.raises(ValueError, match="step"):
        env_lib.HParamEnv(task, step=0.0)
    with pytest.raises(ValueError, match="windows"):
        env_lib.HParamEnv(task, windows=0)
    with pytest.raises(ValueError, match="not dynamic"):
        env_lib.HParamEnv(task, space=Space(depth=IntUniform(1, 3)))
    with pytest.raises(ValueError, match="trunk"):
        tasks.make_task(data.synthetic_split(0), trunk="rnn")
    with pytest.raises(ValueError, match="dynamic"):
        bad = Space(**{**SMALL.dims, "units": IntUniform(8, 32)})
        tasks.make_task(data.synthetic_split(0), hparam_space=bad)
