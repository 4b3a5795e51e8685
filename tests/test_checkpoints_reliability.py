"""Checkpoints that survive: the best keeps its score through the final save, a damaged
manifest is rebuilt from the checkpoints, damaged array data fails its checksum and is set
aside, a resumed Loop equals an uninterrupted one (the tuner's state and the key are
saved; so are the backoff, spawns and variants of a window that went DORMANT), a run
that had ended stays ended, bad state is refused before any window."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
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

    class Trained:  # the windows this process trains
        def __init__(self):
            self.windows = []

        def on_window_end(self, loop, window, metrics):
            self.windows.append(window)

    whole = loop().run(init_state(), jax.random.key(1), max_windows=9)
    first = loop(tmp_path, [StopAfterFive()])
    stopped = first.run(init_state(), jax.random.key(1), max_windows=9)
    assert stopped.reason == "stopped" and stopped.windows == 5
    first.checkpoints.close()
    trained = Trained()
    resumed = loop(tmp_path, [trained]).run(init_state(), jax.random.key(1), max_windows=9)
    assert trained.windows == [5, 6, 7, 8]  # from the checkpoint, not replayed from 0
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


# A single run whose score stops improving after 3 windows: plateau, DORMANT, a spawn
# (restart from the best with noise) every 3 windows until the spawn budget is spent.
DORMANT_RUN = textwrap.dedent(
    """
    import os, sys
    import jax, jax.numpy as jnp
    import hagfish_jax as hj

    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))

    def init(key, hp):
        return {"n": jnp.zeros((), jnp.float32), "extra": hj.extra_hparams(**hp)}

    def train_window(s, key):
        return {"n": s["n"] + 1.0, "extra": s["extra"]}, {}

    task = hj.Task(init=init, train_window=train_window, space=space,
                   evaluate=lambda s: {"score": jnp.minimum(s["n"], 1.0) / 10.0},
                   default_hparams={"learning_rate": 0.1})

    class KillAt(hj.Callback):
        def __init__(self, window):
            self.window, self.trained = window, []

        def on_window_end(self, loop, window, metrics):
            self.trained.append(window)
            if window == self.window:
                os._exit(3)  # killed: nothing after this runs, no final save

    def run(directory, windows=14, kill_at=None):
        watch = KillAt(kill_at)
        loop = hj.Loop(task=task, checkpoint_dir=directory, save_every=1,
                       backoff=hj.Backoff(plateau=1, dormant=2), callbacks=[watch])
        result = loop.run(None, jax.random.key(0), windows)
        if loop.checkpoints is not None:
            loop.checkpoints.close()
        result.trained = watch.trained  # the windows this process trained
        return result

    if __name__ == "__main__":
        run(sys.argv[1], kill_at=int(sys.argv[2]))
    """
)


def _dormant_run():
    namespace = {"__name__": "dormant_run"}
    exec(DORMANT_RUN, namespace)  # noqa: S102 - the same code as the killed process
    return namespace["run"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kill_at", [4, 7])
def test_a_run_killed_after_a_dormant_window_resumes_as_if_never_killed(tmp_path, kill_at):
    run = _dormant_run()
    whole = run(None)
    assert whole.reason == "spawn budget spent" and whole.spawns == 3
    killed = subprocess.run([sys.executable, "-c", DORMANT_RUN, str(tmp_path), str(kill_at)],
                            capture_output=True, text=True, timeout=200, check=False)
    assert killed.returncode == 3, killed.stderr[-2000:]
    # the last checkpoint is of the window before the kill, which went DORMANT and spawned
    assert Checkpoints(tmp_path).latest["window"] == kill_at - 1
    resumed = run(str(tmp_path))
    assert resumed.trained == list(range(kill_at, whole.windows))  # none trained twice
    for field in ("reason", "windows", "evaluations", "spawns", "rollbacks", "best_window"):
        assert getattr(resumed, field) == getattr(whole, field), field
    assert resumed.hparams == pytest.approx(whole.hparams)
    assert resumed.history == whole.history
    assert resumed.ensemble == whole.ensemble  # the variants' best states came back too
    chex.assert_trees_all_close(resumed.ensemble_states, whole.ensemble_states)

    # resumed once more with a larger budget, the ended run trains nothing
    again = run(str(tmp_path), windows=30)
    assert again.trained == []
    assert (again.reason, again.windows, again.spawns) == (whole.reason, whole.windows, 3)
    assert again.history == whole.history


def test_damaged_array_data_fails_its_checksum_and_is_set_aside(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=1)
    for w in range(3):
        ck.save(w, {"w": jnp.arange(4096.0) + w}, score=1.0 - 0.1 * w)  # best: window 0
    ck.close()
    # the bytes of an array, not the structure: orbax alone reads this back silently
    data = max((f for f in (tmp_path / "window_00000002").rglob("*") if f.is_file()),
               key=lambda f: f.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 8] = b"\x7f" * 8
    data.write_bytes(bytes(raw))
    ck = Checkpoints(tmp_path, keep_last=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, entry = ck.restore({"w": jnp.zeros(4096)}, "latest")
    assert entry["window"] == 0  # the only other one left by keep_last=1
    assert any("checksum" in str(w.message) for w in caught)
    assert float(state["w"][5]) == 5.0
    # set aside: out of the manifest, so keep_last counts the new saves, not the damaged one
    assert (tmp_path / ".damaged_window_00000002").is_dir()
    assert not (tmp_path / "window_00000002").exists()
    for w in (1, 2, 3):
        ck.save(w, {"w": jnp.arange(4096.0) + w}, score=0.5)
    ck.close()
    again = Checkpoints(tmp_path, keep_last=1)
    state, entry = again.restore({"w": jnp.zeros(4096)}, "latest")
    assert entry["window"] == 3 and float(state["w"][0]) == 3.0
    assert sorted(e["window"] for e in again.entries) == [0, 3]


def test_a_resume_falls_back_to_the_newest_good_checkpoint(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=3)
    for w, score in enumerate([0.9, 0.1, 0.2, 0.3]):  # best: window 0
        ck.save(w, {"w": jnp.full(2, float(w))}, score=score)
    for f in (tmp_path / "window_00000003").rglob("*"):
        if f.is_file():
            f.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state, entry = ck.restore({"w": jnp.zeros(2)}, "latest")
    assert entry["window"] == 2  # not the best (window 0): the least work is lost
