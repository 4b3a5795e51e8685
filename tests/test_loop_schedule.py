"""The Loop's schedule: a tuner's probe windows are not degradations, and a rollback
brings the evaluation back to the base interval."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj
from hagfish_jax.shell.loop import Backoff, Callback, Loop

TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))


def init_state():
    w = jnp.zeros(3)
    return {"w": w, "opt": TX.init(w)}


def prober(flag: bool) -> hj.Tuner:
    """Every other window tries lr 0.5 (a probe that scores worse), then back to 0.1."""

    def init(key, hp):
        return jnp.int32(0)

    def update(count, obs):
        probe = (count + 1) % 2 == 1
        hp = {"learning_rate": jnp.where(probe, 0.5, 0.1).astype(jnp.float32)}
        return hj.Proposal(hp, jnp.int32(hj.KEEP), jnp.asarray(False),
                           probe if flag else None), count + 1

    return hj.Tuner(init, update)


def test_probe_windows_of_a_tuner_are_not_degradations():
    still = jax.jit(lambda s, k: (s, {}))
    scored = jax.jit(lambda s: {"score": 1.0 - jnp.abs(hj.get_hparams(s)["learning_rate"] - 0.1)})
    seen = {}
    for flag in (True, False):
        seen[flag] = []

        class Watch(Callback):
            def on_degradation(self, loop, window, score, flag=flag):
                seen[flag].append(window)

        loop = Loop(still, scored, tuner=prober(flag), space=SPACE, callbacks=[Watch()],
                    backoff=Backoff(noise=0.0, degradation=0.9, patience=1, plateau=100,
                                    dormant=200, backoff=1.0))
        r = loop.run({"opt": TX.init(jnp.zeros(3))}, jax.random.key(0), max_windows=10)
        assert r.evaluations == 10
    assert seen[True] == []  # probes marked as such never degrade the run
    assert seen[False] == [1, 3, 5, 7, 9]  # unmarked, every probe window counts


def test_after_a_rollback_the_loop_evaluates_at_the_base_interval_again():
    """A run that went COOLING (plateau), then degraded and rolled back: the next
    evaluation comes one window later, not after the grown interval."""
    scripted = iter([1.0, 1.0, 1.0, 1.0, 0.1, 0.1] + [1.0] * 50)
    windows = []

    class Watch(Callback):
        def on_evaluation(self, loop, window, evaluation, transition):
            windows.append(window)

    loop = Loop(
        jax.jit(lambda s, k: (s, {})),
        lambda s: {"score": next(scripted)},
        backoff=Backoff(plateau=2, dormant=50, noise=0.0, backoff=2.0, patience=2),
        callbacks=[Watch()],
    )
    r = loop.run(init_state(), jax.random.key(0), max_windows=40)
    assert r.rollbacks == 1
    bad = [h["window"] for h in r.history if h["score"] < 0.5]  # the second confirms it
    i = windows.index(bad[1])
    assert windows[i + 1] - windows[i] == 1  # right after the rollback: every window again
    gaps = np.diff(windows[: i + 1])
    assert gaps.max() > 1  # it had backed off before
