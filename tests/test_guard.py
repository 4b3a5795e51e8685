"""The guard's rules, one test each (DESIGN.md section 4)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj


class ScriptedState(NamedTuple):
    seen_hparams: dict  # what the guard said was applied, at the last consultation
    seen_score: jax.Array
    calls: jax.Array


def multiplier(factor: float) -> hj.Tuner:
    """A test tuner that always proposes ``applied * factor`` and records what it saw."""

    def init(key, hp):
        return ScriptedState(hj.as_hparams(hp), jnp.float32(jnp.nan), jnp.int32(0))

    def update(state, obs):
        hp = {k: v * factor for k, v in obs.hparams.items()}
        new = ScriptedState(obs.hparams, jnp.asarray(obs.score, jnp.float32), state.calls + 1)
        return hj.Proposal(hp, jnp.int32(hj.KEEP), jnp.asarray(False)), new

    return hj.Tuner(init, update)


def run(tuner, scores, hp0=None):
    hp0 = hp0 or {"learning_rate": 0.01}
    state = tuner.init(jax.random.key(0), hp0)
    update = jax.jit(tuner.update)
    lrs, rollbacks, states = [], [], []
    for s in scores:
        p, state = update(state, hj.Observation(score=jnp.float32(s)))
        lrs.append(float(p.hparams["learning_rate"]))
        rollbacks.append(bool(p.rollback))
        states.append(state)
    return np.array(lrs), rollbacks, states


def test_no_change_during_warmup():
    tuner = hj.guard(multiplier(1.2), warmup=3, max_delta=0.5, patience=100)
    lrs, _, _ = run(tuner, [1.0] * 5)
    # warmup=3: the first three updates change nothing, the fourth may
    np.testing.assert_allclose(lrs[:3], 0.01)
    np.testing.assert_allclose(lrs[3], 0.012, rtol=1e-6)
    # and every warmup is its own: 0 may change at once, 1 one update later
    first = [run(hj.guard(multiplier(1.2), warmup=w, patience=100), [1.0] * 4)[0] for w in range(3)]
    changed = [int(np.flatnonzero(~np.isclose(lrs, 0.01))[0]) for lrs in first]
    assert changed == [0, 1, 2]


def test_max_delta_bounds_relative_steps_both_ways():
    up = hj.guard(multiplier(10.0), warmup=0, max_delta=0.5, patience=100)
    lrs, _, _ = run(up, [1.0])
    assert lrs[0] == pytest.approx(0.015, rel=1e-6)  # 0.01 -> proposal 0.1 -> 0.015
    down = hj.guard(multiplier(0.1), warmup=0, max_delta=0.5, patience=100)
    lrs, _, _ = run(down, [1.0, 1.0])
    np.testing.assert_allclose(lrs, [0.005, 0.0025], rtol=1e-6)


def test_max_delta_lets_a_zero_dimension_move_in_unit_space():
    class Push(NamedTuple):
        pass

    def init(key, hp):
        return Push()

    def update(state, obs):
        return hj.Proposal({"dropout": jnp.float32(0.5)}, jnp.int32(-1), jnp.asarray(False)), state

    space = hj.Space(dropout=hj.Uniform(0.0, 0.5))
    with_space = hj.guard(hj.Tuner(init, update), warmup=0, max_delta=0.2, space=space)
    state = with_space.init(jax.random.key(0), {"dropout": 0.0})
    p, _ = with_space.update(state, hj.Observation(score=jnp.float32(1.0)))
    assert float(p.hparams["dropout"]) == pytest.approx(0.1)  # 0.2 of the unit range
    without = hj.guard(hj.Tuner(init, update), warmup=0, max_delta=0.2)
    state = without.init(jax.random.key(0), {"dropout": 0.0})
    p, _ = without.update(state, hj.Observation(score=jnp.float32(1.0)))
    assert float(p.hparams["dropout"]) == pytest.approx(0.2)


def test_smoothing_is_the_mean_of_the_last_raw_scores():
    g3 = hj.guard(hj.fixed(), warmup=0, smoothing=3)
    _, _, states = run(g3, [1.0, 2.0, 3.0, 6.0])
    assert [float(s.best) for s in states] == pytest.approx([1.0, 1.5, 2.0, 11.0 / 3.0])
    g1 = hj.guard(hj.fixed(), warmup=0, smoothing=1)
    _, _, states = run(g1, [1.0, 2.0, 3.0])
    assert float(states[-1].best) == 3.0


def test_regression_beyond_tolerance_is_bad_with_negative_scores():
    tuner = hj.guard(hj.fixed(), warmup=0, smoothing=1, tolerance=0.2, patience=10)
    _, _, states = run(tuner, [-10.0, -11.9])
    assert int(states[-1].bad) == 0  # within 20% of |best|
    _, _, states = run(tuner, [-10.0, -12.5])
    assert int(states[-1].bad) == 1
    # A sign-naive rule (score < best * (1 - tol)) would call -7 bad; it is better.
    _, _, states = run(tuner, [-10.0, -7.0])
    assert int(states[-1].bad) == 0 and float(states[-1].best) == -7.0


def test_nan_is_never_best_and_never_smoothed():
    tuner = hj.guard(hj.fixed(), warmup=0, smoothing=3, patience=10, cooldown=0)
    _, rollbacks, states = run(tuner, [1.0, np.nan, np.inf, 2.0])
    assert rollbacks == [False, True, True, False]  # non-finite: at once, not after 10
    assert [int(s.divergences) for s in states] == [0, 1, 2, 2]
    assert float(states[2].best) == 1.0
    assert int(states[2].recent_count) == 0  # the rollback restarts the smoothing window
    assert float(states[-1].best) == 2.0  # mean of [2.0]: NaN/inf never entered it


def test_patience_then_exact_rollback_to_last_good_and_cooldown():
    tuner = hj.guard(
        multiplier(1.5),
        warmup=0,
        max_delta=0.5,
        smoothing=1,
        tolerance=0.1,
        patience=2,
        cooldown=3,
    )
    scores = [1.0, 1.0, 0.5, 0.5, 0.1, 0.1, 5.0, 1.0]
    lrs, rollbacks, states = run(tuner, scores)
    # windows 1-2 good (lr 0.01 then 0.015), windows 3-4 bad -> rollback after window 4
    assert rollbacks == [False, False, False, True, False, False, False, False]
    # the last good window (2) ran with 0.015: proposed exactly, a 56% drop from 0.03375
    assert lrs[3] == pytest.approx(0.015, rel=1e-6)
    assert lrs[2] == pytest.approx(0.03375, rel=1e-6)
    # cooldown windows 5-7: nothing judged, nothing changes, no new best from the 5.0
    assert [int(s.bad) for s in states[4:7]] == [0, 0, 0]
    np.testing.assert_allclose(lrs[4:7], 0.015, rtol=1e-6)
    assert float(states[6].best) == 1.0
    # after the cooldown judging and tuning resume
    assert lrs[7] == pytest.approx(0.0225, rel=1e-6)
    assert int(states[-1].rollbacks) == 1


def test_nan_rolls_back_at_once_to_last_good_when_the_tuner_raised_the_rate():
    tuner = hj.guard(multiplier(1.5), warmup=0, smoothing=2, patience=5, cooldown=1)
    lrs, rollbacks, states = run(tuner, [1.0, np.nan])
    assert rollbacks == [False, True]
    # window 2 ran at 0.015 (above the last good 0.01) and diverged: back to 0.01 exactly
    assert lrs[1] == pytest.approx(0.01)
    assert float(states[-1].last_good["learning_rate"]) == pytest.approx(0.01)


def test_divergence_at_the_start_shrinks_the_learning_rate_each_time():
    tuner = hj.guard(multiplier(1.0), warmup=0, cooldown=2)
    hp0 = {"learning_rate": 1.0, "b1": 0.9}
    state = tuner.init(jax.random.key(0), hp0)
    update = jax.jit(tuner.update)
    lrs, b1s = [], []
    for s in [np.nan, np.nan, 0.5]:  # the second NaN lands in the cooldown: still caught
        p, state = update(state, hj.Observation(score=jnp.float32(s)))
        assert bool(p.rollback) == (not np.isfinite(s))
        lrs.append(float(p.hparams["learning_rate"]))
        b1s.append(float(p.hparams["b1"]))
    np.testing.assert_allclose(lrs, [0.1, 0.01, 0.01], rtol=1e-6)
    np.testing.assert_allclose(b1s, 0.9, rtol=1e-6)  # only learning rates shrink
    assert int(state.divergences) == 2 and int(state.rollbacks) == 2


def test_shrink_factors_prefixed_names_space_floor_and_off_switch():
    space = hj.Space(learning_rate=hj.LogUniform(0.05, 1.0))
    hp0 = {"a/learning_rate": 1.0, "learning_rate": 0.5}
    default = hj.guard(hj.fixed(), warmup=0, space=space)
    p, _ = default.update(default.init(jax.random.key(0), hp0), hj.Observation(jnp.nan))
    assert float(p.hparams["a/learning_rate"]) == pytest.approx(0.1)
    assert float(p.hparams["learning_rate"]) == pytest.approx(0.05)  # clipped to the space
    custom = hj.guard(hj.fixed(), warmup=0, shrink={"learning_rate": 0.5})
    p, _ = custom.update(custom.init(jax.random.key(0), hp0), hj.Observation(jnp.nan))
    assert float(p.hparams["learning_rate"]) == pytest.approx(0.25)
    assert float(p.hparams["a/learning_rate"]) == pytest.approx(1.0)
    off = hj.guard(hj.fixed(), warmup=0, shrink={})
    p, _ = off.update(off.init(jax.random.key(0), hp0), hj.Observation(jnp.nan))
    assert bool(p.rollback) and float(p.hparams["a/learning_rate"]) == 1.0


@pytest.mark.parametrize(
    "shrink, message",
    [({"learning_rate": 1.0}, "shrink"), ({"learning_rate": 0.0}, "shrink"), ([0.1], "mapping")],
)
def test_bad_shrink_is_rejected(shrink, message):
    with pytest.raises((ValueError, TypeError), match=message):
        hj.guard(hj.fixed(), shrink=shrink)


def test_shrink_of_an_unknown_name_fails_at_init():
    tuner = hj.guard(hj.fixed(), shrink={"momentum": 0.5})
    with pytest.raises(ValueError, match="momentum"):
        tuner.init(jax.random.key(0), {"learning_rate": 0.1})


def test_tune_every_limits_changes():
    tuner = hj.guard(multiplier(1.1), warmup=1, tune_every=3, patience=100)
    lrs, _, _ = run(tuner, [1.0] * 10)
    changes = np.flatnonzero(~np.isclose(np.diff(np.concatenate([[0.01], lrs])), 0.0))
    assert list(changes) == [3, 6, 9]  # after the warmup update, every third: windows 4, 7, 10
    assert np.all(np.diff(changes) >= 3)


def test_inner_tuner_sees_applied_values_and_block_mean():
    tuner = hj.guard(multiplier(10.0), warmup=0, max_delta=0.5, tune_every=2, patience=100)
    _, _, states = run(tuner, [1.0, 3.0, 5.0, 7.0])
    first, inner = states[1].inner, states[-1].inner
    # consulted after window 2 (saw 0.01 and the mean of windows 1-2), then after
    # window 4: it saw the clamped 0.015, not its own 0.1, and the mean of windows 3-4
    assert int(first.calls) == 1 and float(first.seen_score) == pytest.approx(2.0)
    assert int(inner.calls) == 2
    assert float(inner.seen_hparams["learning_rate"]) == pytest.approx(0.015, rel=1e-6)
    assert float(inner.seen_score) == pytest.approx(6.0)


def test_guard_validates_every_option():
    for kwargs, word in [
        ({"warmup": -1}, "warmup"),
        ({"max_delta": 0.0}, "max_delta"),
        ({"max_delta": 1.5}, "max_delta"),
        ({"smoothing": 0}, "smoothing"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"patience": 0}, "patience"),
        ({"cooldown": -2}, "cooldown"),
        ({"tune_every": 0}, "tune_every"),
        ({"tune_every": 1.5}, "tune_every"),
    ]:
        with pytest.raises(ValueError, match=word):
            hj.guard(hj.fixed(), **kwargs)
    with pytest.raises(TypeError, match="Tuner"):
        hj.guard(lambda: None)


def test_guarded_fd_stays_in_space_and_never_jumps():
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0), b1=hj.Uniform(0.5, 0.99))
    tuner = hj.guard(hj.finite_difference(space, step=0.3), warmup=0, max_delta=0.25, space=space)
    key = jax.random.key(0)
    scores = jax.random.normal(key, (60,))
    state = tuner.init(key, {"learning_rate": 0.01, "b1": 0.9})
    prev = hj.as_hparams({"learning_rate": 0.01, "b1": 0.9})
    for s in scores:
        p, state = tuner.update(state, hj.Observation(score=s))
        if not bool(p.rollback):
            for k in prev:
                assert abs(float(p.hparams[k]) - float(prev[k])) <= 0.25 * abs(float(prev[k])) * (
                    1 + 1e-5
                )
        assert space.contains(p.hparams)
        prev = p.hparams


def scripted(factor: float = 1.0, explore: bool = False, parents: int = hj.KEEP) -> hj.Tuner:
    """A test tuner proposing ``applied * factor`` with a fixed ``explore`` and ``parents``."""

    def init(key, hp):
        return ()

    def update(state, obs):
        hp = {k: v * factor for k, v in obs.hparams.items()}
        return hj.Proposal(hp, jnp.int32(parents), jnp.asarray(False), jnp.asarray(explore)), state

    return hj.Tuner(init, update)


def test_a_good_window_resets_the_count_of_consecutive_bad_ones():
    tuner = hj.guard(hj.fixed(), warmup=0, smoothing=1, tolerance=0.1, patience=2, cooldown=0)
    # bad, good, bad, good, bad: never two bad windows in a row, so never a rollback
    _, rollbacks, states = run(tuner, [1.0, 0.5, 1.0, 0.5, 1.0, 0.5])
    assert [int(s.bad) for s in states] == [0, 1, 0, 1, 0, 1]
    assert not any(rollbacks) and int(states[-1].rollbacks) == 0


def test_a_rollback_after_patience_restores_exactly_and_shrinks_nothing():
    # the values in force never changed, so they equal the last good ones; only a
    # divergence shrinks the learning rate, a regression rolls back to it exactly
    tuner = hj.guard(hj.fixed(), warmup=0, smoothing=1, tolerance=0.1, patience=2, cooldown=1)
    lrs, rollbacks, states = run(tuner, [1.0, 0.1, 0.1])
    assert rollbacks == [False, False, True]
    np.testing.assert_array_equal(lrs, np.float32(0.01))
    assert int(states[-1].divergences) == 0


def test_a_shrunk_fallback_is_remembered_by_later_rollbacks():
    tuner = hj.guard(multiplier(1.0), warmup=0, smoothing=1, tolerance=0.1, patience=2, cooldown=0)
    # window 2 diverges at lr 1.0 (the last good value): shrunk to 0.1; windows 3-4 then
    # regress, and the rollback must not return to the 1.0 that diverged
    lrs, rollbacks, _ = run(tuner, [1.0, np.nan, 0.2, 0.2], hp0={"learning_rate": 1.0})
    assert rollbacks == [False, True, False, True]
    np.testing.assert_allclose(lrs, [1.0, 0.1, 0.1, 0.1], rtol=1e-6)


def test_a_rollback_ends_a_probe_and_no_parent_is_copied_while_the_guard_holds():
    tuner = hj.guard(scripted(2.0, explore=True, parents=0), warmup=1, cooldown=1)
    state = tuner.init(jax.random.key(0), {"learning_rate": 0.01})
    update = jax.jit(tuner.update)
    explores, parents, lrs = [], [], []
    for s in [1.0, 1.0, np.nan, 1.0, 1.0]:
        p, state = update(state, hj.Observation(score=jnp.float32(s)))
        explores.append(bool(p.explore))
        parents.append(int(p.parents))
        lrs.append(float(p.hparams["learning_rate"]))
    # warmup, a probe, the divergence rolls it back (no longer a probe), cooldown, a probe
    assert explores == [False, True, False, False, True]
    assert lrs == pytest.approx([0.01, 0.015, 0.01, 0.01, 0.015])
    # the wrapped tuner's parents pass only when it was consulted
    assert parents == [hj.KEEP, 0, hj.KEEP, hj.KEEP, 0]


def test_the_wrapped_tuner_hears_of_a_divergence_and_does_not_probe_there_again():
    # A run whose learning rate diverges above 0.2 and is best at 0.05. Guarded finite
    # differences climb from 1e-3 and probe 0.202 once. Told that the probe diverged,
    # the tuner turns back; never told, it probed 0.202 again every few windows (a
    # rollback, and a restored state, each time) and sat at 0.168.
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))

    def init(key, hp):
        return {"w": jnp.ones(()), "extra": hj.extra_hparams(**hp)}

    def train_window(s, key):
        lr = s["extra"].hyperparams["learning_rate"]
        gain = jnp.exp(-((jnp.log(lr) - jnp.log(0.05)) ** 2))
        return {**s, "w": jnp.where(lr > 0.2, jnp.nan, s["w"] * (1 - 0.2 * gain))}, {}

    task = hj.Task(init=init, train_window=train_window, evaluate=lambda s: {"score": -s["w"]},
                   space=space, default_hparams={"learning_rate": 1e-3})
    prog = hj.program.build(task, hj.guard(hj.finite_difference(space), space=space))
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 60))(prog.init(jax.random.key(0)))
    diverged = ~np.isfinite(np.asarray(rows["score"]))
    assert int(diverged.sum()) == 1  # the first probe past 0.2 only
    lrs = np.asarray(rows["learning_rate"])
    assert lrs[-1] < 0.1 and abs(np.log(lrs[-1] / 0.05)) < abs(np.log(0.168 / 0.05))
