"""PPO on the functional CartPole, vmapped over a population."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax.rl import PPO

PPO_SMALL = PPO(num_envs=16, num_steps=64, updates_per_window=4)


@pytest.fixture(scope="module", autouse=True)
def _one_cpu():
    """These programs can stall in jax 0.10's CPU runtime on 2 cores: pinned when the
    installed jax is such a release (hagfish_jax.shell._affinity)."""
    from hagfish_jax.shell._affinity import pinned_if_needed

    with pinned_if_needed():
        yield


@pytest.fixture(scope="module")
def trained():
    n = 4
    run = jax.jit(
        lambda s, k: jax.lax.scan(
            lambda c, kk: jax.vmap(PPO_SMALL.train_window)(c, jax.random.split(kk, n)),
            s,
            jax.random.split(k, 20),
        )
    )
    states = jax.vmap(PPO_SMALL.init)(jax.random.split(jax.random.key(0), n))
    final, metrics = run(states, jax.random.key(1))
    again, _ = run(states, jax.random.key(1))
    return final, metrics, again


def test_population_of_four_solves_cartpole_within_budget(trained):
    final, metrics, _ = trained
    # 20 windows x 4 updates x 16 envs x 64 steps = 81,920 environment steps per member
    assert int(final.steps[0]) == 20 * 4 * 16 * 64
    assert float(jnp.max(jax.vmap(PPO_SMALL.evaluate)(final)["score"])) >= 475.0
    assert float(metrics["mean_return"][0].max()) < 100.0  # it really learned


def test_smoothed_return_breaks_ties_at_the_cap(trained):
    from hagfish_jax.rl.ppo import RETURN_SMOOTHING, _smoothed

    # the first finished episode sets the average; later ones move it by the weight
    avg = _smoothed(jnp.zeros(2), jnp.array([500.0, 20.0]), jnp.array([0, 3]))
    assert avg.tolist() == [500.0, RETURN_SMOOTHING * 20.0]
    final, _, _ = trained
    ev = jax.vmap(PPO_SMALL.evaluate)(final)
    assert bool(jnp.all(final.episodes > 0))
    best = int(jnp.argmax(ev["score"]))
    # the solving agent has held long episodes for a while, not just its last one
    assert float(ev["avg_return"][best]) > 200.0
    np.testing.assert_allclose(ev["tie_break"], -ev["avg_return"])
    np.testing.assert_allclose(ev["avg_return"], jnp.mean(final.avg_return, axis=1))


def test_deterministic_for_a_fixed_key(trained):
    final, _, again = trained
    for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(again.params)):
        np.testing.assert_array_equal(a, b)


def test_ppo_hyperparameters_are_traced_without_retrace():
    traces = []

    @jax.jit
    def window(state, key):
        traces.append(1)
        return PPO(num_envs=4, num_steps=8, updates_per_window=1).train_window(state, key)

    ppo = PPO(num_envs=4, num_steps=8, updates_per_window=1)
    state = ppo.init(jax.random.key(0))
    for i, hp in enumerate(
        [
            {"clip_eps": 0.1},
            {"gamma": 0.95, "ent_coef": 0.05},
            {"learning_rate": 1e-3, "vf_coef": 0.9, "gae_lambda": 0.9},
        ]
    ):
        state = hj.set_hparams(state, hp)
        state, _ = window(state, jax.random.key(i))
    assert len(traces) == 1
    got = hj.get_hparams(state)
    assert float(got["gamma"]) == pytest.approx(0.95) and float(got["clip_eps"]) == pytest.approx(
        0.1
    )
    assert hj.rl.space.contains({k: got[k] for k in hj.rl.space.names})


def test_ensemble_policy_averages_member_probabilities(trained):
    final, _, _ = trained
    obs = jnp.zeros((3, 4))
    w = jnp.array([0.5, 0.5, 0.0, 0.0])
    probs = hj.ensemble.predict(PPO_SMALL.policy_probs, final.params, obs, w, kind="probs")
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    manual = 0.5 * PPO_SMALL.policy_probs(jax.tree.map(lambda x: x[0], final.params), obs)
    manual += 0.5 * PPO_SMALL.policy_probs(jax.tree.map(lambda x: x[1], final.params), obs)
    np.testing.assert_allclose(probs, manual, rtol=1e-5)


def test_ppo_validation():
    with pytest.raises(ValueError, match="num_minibatches"):
        PPO(num_envs=3, num_steps=5, num_minibatches=4)
    with pytest.raises(ValueError, match="num_envs"):
        PPO(num_envs=0)


def test_cartpole_demo_end_to_end(tmp_path):
    import json

    from hagfish_jax import cli

    out = tmp_path / "cp"
    argv = [
        "demo",
        "--task",
        "cartpole",
        "--population",
        "4",
        "--generations",
        "3",
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "cartpole" and summary["population"] == 4
    assert summary["total_cost"] == 4 * 3 * 4 * 16 * 64  # environment steps, all members
    assert summary["cost_unit"] == "environment steps" and summary["target"] == 475.0
    # pbt's default ready=2: none replaced in generation 1, then one of four a generation
    assert summary["exploits"] == 2
    assert hj.rl.space.contains(summary["best_hparams"])
    run = hj.records.read_run(out)
    assert sorted(run["rows"]) == [f"member_{i:02d}" for i in range(4)]
    assert all(len(rows) == 3 and "score" in rows[0] for rows in run["rows"].values())
    assert summary["best_score"] == max(r["score"] for rows in run["rows"].values() for r in rows)
    assert len([e for e in run["events"] if e["kind"] == "exploit"]) == 2


def test_cartpole_demo_rejects_options_it_does_not_have(capsys):
    from hagfish_jax import cli

    with pytest.raises(SystemExit):
        cli.main(["demo", "--task", "cartpole", "--model", "cnn"])
    assert "--model mlp only" in capsys.readouterr().err


def test_numpy_gymnasium_cartpole_through_the_loop():
    from hagfish_jax.rl import NumpyPPO

    env = NumpyPPO(seed=0)
    agent = env.init(jax.random.key(0))
    space = hj.rl.space.subspace(["learning_rate"])
    updates = []

    class Count(hj.Callback):
        def on_hparams_update(self, loop, window, hparams, source):
            updates.append(hparams["learning_rate"])

    loop = hj.Loop(
        env.train_window,
        env.evaluate,
        backoff=hj.Backoff(noise=0.0, plateau=50, dormant=100),
        tuner=hj.guard(hj.finite_difference(space), warmup=2, space=space),
        space=space,
        callbacks=[Count()],
    )
    result = loop.run(agent, jax.random.key(1), max_windows=20)
    assert result.windows == 20 and result.reason == "budget"
    assert result.best_score > 150.0  # random play scores about 20
    assert int(result.state.steps) % (8 * 128) == 0 and int(result.state.steps) > 0
    assert len(set(updates)) > 1 and all(space.contains({"learning_rate": u}) for u in updates)
