"""Checkpoints that survive: the best keeps its score through the final save, a damaged
manifest is rebuilt from the checkpoints, a resumed Loop equals an uninterrupted one
(the tuner's state and the key are saved), bad state is refused before any window."""

from __future__ import annotations

import json
import warnings

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax.shell.loop import Backoff, Checkpoints, Loop

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
TARGET = jnp.array([1.0, -2.0, 0.5])


def init_state():
    w = jnp.zeros(3)
    return {"w": w, "opt": TX.init(w)}


@jax.jit
def step(state, key):
    noise = 0.05 * jax.random.normal(key, (3,))  # the key matters: a resume must restore it
    g = jax.grad(lambda w: jnp.sum((w - TARGET) ** 2))(state["w"]) + noise
    u, opt = TX.update(g, state["opt"], state["w"])
    return {"w": optax.apply_updates(state["w"], u), "opt": opt}, {}


@jax.jit
def evaluate(state):
    return {"score": -jnp.sum((state["w"] - TARGET) ** 2)}


def test_the_final_save_never_demotes_the_best_window(tmp_path):
    loop = Loop(step, evaluate, checkpoint_dir=str(tmp_path), backoff=Backoff(noise=0.0))
    result = loop.run(init_state(), jax.random.key(0), max_windows=5)
    assert result.best_window == 4  # still improving at the end: the last window is best
    loop.checkpoints.close()
    ck = Checkpoints(tmp_path)
    assert ck.best["window"] == 4 and ck.best["score"] == pytest.approx(result.best_score)
    carry, entry = ck.restore(result.carry, "best")  # the Loop saves its whole carry
    assert entry["window"] == 4 and float(carry.best.score) == pytest.approx(result.best_score)


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "deleted", "a list", "an entry without a name"],
)
def test_a_damaged_manifest_is_rebuilt_from_the_checkpoints(tmp_path, damage):
    ck = Checkpoints(tmp_path, keep_last=3)
    for w, score in enumerate([0.1, 0.9, 0.5]):
        ck.save(w, {"w": jnp.full(2, float(w))}, score=score)
    ck.close()
    manifest = tmp_path / "manifest.json"
    text = manifest.read_text()
    if damage == "deleted":
        manifest.unlink()
    else:
        manifest.write_text({
            "garbage": "{{{ not json", "truncated": text[: len(text) // 2], "empty": "",
            "a list": json.dumps([1, 2]),
            "an entry without a name": json.dumps({"entries": [{"window": 0, "score": 1}]}),
        }[damage])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = Checkpoints(tmp_path, keep_last=3)
    assert sum("rebuilt from 3 checkpoint" in str(w.message) for w in caught) == 1
    assert [e["window"] for e in again.entries] == [0, 1, 2]
    assert again.best["window"] == 1 and again.latest["window"] == 2
    state, entry = again.restore({"w": jnp.zeros(2)}, "latest")
    assert entry["window"] == 2 and float(state["w"][0]) == 2.0
    assert json.loads(manifest.read_text())["entries"] == again.entries  # written back


@pytest.mark.parametrize("inner", ["finite_difference", "bayes"])
def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path, inner):
    tuner = hj.guard(getattr(hj, inner)(SPACE), warmup=1, space=SPACE)

    class StopAfterFive:  # the same 9-window run, interrupted after its fifth window
        def on_window_end(self, loop, window, metrics):
            if window == 4:
                loop.stop()

    def loop(directory=None, callbacks=()):
        return Loop(step, evaluate, tuner=tuner, space=SPACE, save_every=1,
                    backoff=Backoff(plateau=50, dormant=60, backoff=1.0), callbacks=callbacks,
                    checkpoint_dir=None if directory is None else str(directory))

    whole = loop().run(init_state(), jax.random.key(1), max_windows=9)
    first = loop(tmp_path, [StopAfterFive()])
    stopped = first.run(init_state(), jax.random.key(1), max_windows=9)
    assert stopped.reason == "stopped" and stopped.windows == 5
    first.checkpoints.close()
    resumed = loop(tmp_path).run(init_state(), jax.random.key(1), max_windows=9)
    assert [h["window"] for h in resumed.history] == list(range(9))
    chex.assert_trees_all_close(resumed.carry.state, whole.carry.state, rtol=1e-6)
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                     else jax.random.key_data(x), resumed.carry.tuner_state),
        jax.tree.map(lambda x: x if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                     else jax.random.key_data(x), whole.carry.tuner_state),
        rtol=1e-6,
    )
    assert resumed.hparams == pytest.approx(whole.hparams)


def test_a_state_that_cannot_run_is_refused_before_the_first_window(tmp_path):
    calls = []

    def counting(state, key):
        calls.append(1)
        return state, {}

    loop = Loop(counting, evaluate, checkpoint_dir=str(tmp_path))
    with pytest.raises(TypeError):
        loop.run({"w": jnp.zeros(3), "name": "not an array"}, jax.random.key(0), 3)
    assert calls == []
