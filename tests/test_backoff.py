"""The evaluation-backoff state machine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hagfish_jax.shell.loop import Backoff, Phase


def feed(b, scores, start=0):
    out = []
    for i, s in enumerate(scores):
        out.append(b.observe(start + i, s))
    return out


def test_interval_backs_off_geometrically_and_resets_on_improvement():
    b = Backoff(base=1, backoff=2.0, max_interval=8, plateau=100, dormant=100, noise=0.0)
    d = feed(b, [1.0, 1.0, 1.0, 1.0, 1.0])
    # first score improves (interval 1), then 2, 4, 8, 8
    assert [x.next_window - w for w, x in enumerate(d)] == [1, 2, 4, 8, 8]
    d = b.observe(5, 2.0)
    assert d.improved and d.next_window == 6
    assert not b.due(5) and b.due(6)


def test_transitions_active_cooling_active_dormant():
    b = Backoff(plateau=2, dormant=4, noise=0.0)
    phases = [x.phase for x in feed(b, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0])]
    A, C, D = Phase.ACTIVE, Phase.COOLING, Phase.DORMANT
    assert phases == [A, A, C, A, A, C, C, D]
    assert b.done and not b.due(10_000)


def test_min_windows_delays_dormant():
    b = Backoff(plateau=1, dormant=2, noise=0.0, min_windows=10)
    phases = [x.phase for x in feed(b, [1.0] * 12)]
    assert Phase.DORMANT not in phases[:9]
    assert phases[9] is Phase.DORMANT  # window 9 is the 10th window


def test_noise_floor_and_scale_invariance():
    rng = np.random.default_rng(0)
    scores = np.cumsum(rng.normal(0.01, 0.05, 60)) + 0.5
    a = Backoff(plateau=3, dormant=8, noise=1.0)
    b = Backoff(plateau=3, dormant=8, noise=1.0)
    pa = [(x.phase, x.improved, x.next_window) for x in feed(a, scores)]
    pb = [(x.phase, x.improved, x.next_window) for x in feed(b, 1000.0 * scores)]
    assert pa == pb
    # with a floor, gains smaller than the noise are not improvements
    c = Backoff(noise=2.0, plateau=100, dormant=100)
    feed(c, [0.0, 1.0, 0.0, 1.0])  # spread ~0.58
    assert not c.observe(4, 1.5).improved
    assert c.observe(5, 3.0).improved


def test_degradation_with_negative_scores():
    b = Backoff(degradation=0.95, patience=1, noise=0.0, plateau=100, dormant=100)
    b.observe(0, -100.0)
    assert not b.observe(1, -104.0).degraded
    assert b.observe(2, -106.0).degraded


def test_degradation_needs_patience_and_nan_is_bad():
    b = Backoff(degradation=0.9, patience=2, noise=0.0, plateau=100, dormant=100)
    b.observe(0, 1.0)
    assert not b.observe(1, 0.5).degraded
    assert not b.observe(2, 0.95).degraded  # streak broken
    assert not b.observe(3, math.nan).degraded
    d = b.observe(4, math.nan)
    assert d.degraded and not d.improved and b.best == 1.0


def test_watchdog_in_continuous_mode():
    b = Backoff(plateau=1, dormant=2, max_interval=16, continuous=True, noise=0.0, patience=1)
    d = feed(b, [1.0, 1.0, 1.0])
    assert d[-1].phase is Phase.WATCHDOG and d[-1].transition == (Phase.COOLING, Phase.WATCHDOG)
    assert d[-1].next_window == 2 + 16
    assert not b.done and b.due(18)
    assert b.observe(18, 0.5).degraded  # watched: degradation flagged
    assert b.observe(34, 5.0).phase is Phase.ACTIVE  # a real improvement wakes it


def test_state_dict_round_trip():
    b = Backoff(plateau=2, dormant=5)
    feed(b, [0.1, 0.3, 0.2, 0.25])
    c = Backoff(plateau=2, dormant=5)
    c.load_state_dict(b.state_dict())
    assert c.state_dict() == b.state_dict()
    assert c.observe(10, 0.2) == b.observe(10, 0.2)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"base": 0}, "base"),
        ({"backoff": 0.5}, "backoff"),
        ({"max_interval": 0}, "max_interval"),
        ({"plateau": 3, "dormant": 2}, "dormant"),
        ({"degradation": 0.0}, "degradation"),
        ({"patience": 0}, "patience"),
        ({"noise": -1.0}, "noise"),
    ],
)
def test_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Backoff(**kwargs)


def test_one_outlier_does_not_hide_a_rising_trend():
    scores = [0.5 + 0.01 * i for i in range(30)]
    scores[10] = 0.1 * scores[10]  # one score 90% below the trend
    b = Backoff(plateau=3, dormant=20)
    decisions = feed(b, scores)
    after = decisions[12:]
    assert all(d.improved for d in after)  # every later rise still counts
    assert all(d.phase is Phase.ACTIVE for d in decisions)
    assert max(d.next_window - w for w, d in enumerate(decisions)) <= 2  # no long back-off


def test_a_rollback_reactivates_the_schedule():
    b = Backoff(plateau=2, dormant=50, noise=0.0, backoff=2.0)
    feed(b, [1.0, 1.0, 1.0, 1.0])
    assert b.phase is Phase.COOLING and b.next_window > 4
    b.reactivate(4)
    assert b.phase is Phase.ACTIVE and b.next_window == 5 and b.due(5)
    assert b.best == 1.0  # what the run knows is kept


def test_exploratory_windows_never_count_towards_a_degradation():
    b = Backoff(degradation=0.9, patience=2, noise=0.0, plateau=100, dormant=100)
    b.observe(0, 1.0)
    # three bad probes in a row: the trials', not the run's
    assert not any(b.observe(w, 0.1, explore=True).degraded for w in (1, 2, 3))
    assert not b.observe(4, 0.1).degraded and b.observe(5, 0.1).degraded
    assert b.observe(6, 2.0, explore=True).improved  # a probe may still improve the best


def test_dormant_wakes_on_an_improvement_or_a_rollback_as_live_data_goes_on():
    b = Backoff(plateau=1, dormant=2, noise=0.0)
    for w, score in enumerate([0.5, 0.5, 0.5]):
        d = b.observe(w, score)
    assert d.phase is Phase.DORMANT
    d = b.observe(3, 0.9)  # a stream went on and the score rose
    assert d.phase is Phase.ACTIVE and d.transition == (Phase.DORMANT, Phase.ACTIVE)
    for w, score in enumerate([0.9, 0.9], start=4):
        b.observe(w, score)
    assert b.phase is Phase.DORMANT
    b.reactivate(6)  # restored from the best: evaluate often again
    assert b.phase is Phase.ACTIVE and b.due(7)


def test_spawn_noise_is_finite_whatever_the_history():
    from hagfish_jax.shell.loop import spawn_noise
    from hagfish_jax.shell.loop.steering import noise_scale

    nan = float("nan")
    for args in ((nan, 0.0, 1.0), (0.0, nan, 1.0), (0.0, 0.0, nan)):
        assert 0.02 <= spawn_noise(*args) <= 0.5
    history = [{"score": 0.5, "train_score": t} for t in (0.6, 0.6, nan)]
    assert 0.02 <= noise_scale(history) <= 0.5  # a diverged training score


def _fed(scores, **kw):
    b = Backoff(**kw)
    for w, s in enumerate(scores):
        b.observe(w, s)
    return b


def test_the_noise_floor_starts_at_three_scores():
    assert _fed([1.0, 3.0]).noise_floor() == 0.0
    # diffs 2, -1: sample std sqrt(4.5), over sqrt(2) -> 1.5
    assert _fed([1.0, 3.0, 2.0]).noise_floor() == pytest.approx(1.5)


def test_the_noise_floor_from_five_differences_is_the_scaled_mad():
    # diffs 1..5: median 3, absolute deviations' median 1
    b = _fed([0.0, 1.0, 3.0, 6.0, 10.0, 15.0])
    assert b.noise_floor() == pytest.approx(1.4826 / math.sqrt(2.0))


def test_a_drop_within_the_noise_floor_is_not_bad():
    b = Backoff(degradation=1.0, patience=1)  # margin is the noise floor alone
    for w, s in enumerate([1.0, 0.5, 1.0]):
        b.observe(w, s)
    d = b.observe(3, 0.9)  # floor 0.5 from (1.0, 0.5, 1.0): 0.9 is within it
    assert d.noise_floor == pytest.approx(0.5)
    assert not d.degraded


def test_the_bad_count_starts_again_after_a_degradation():
    b = Backoff(noise=0.0, patience=2)
    assert [b.observe(w, s).degraded for w, s in enumerate([10.0, 1.0, 1.0, 1.0, 1.0])] == [
        False, False, True, False, True]


def test_the_next_window_rounds_the_interval():
    b = Backoff(backoff=1.5, noise=0.0)
    assert b.observe(0, 1.0).next_window == 1
    d = b.observe(1, 1.0)  # no improvement: interval 1.5 -> 2 windows
    assert b.interval == 1.5 and d.next_window == 3
    d = b.observe(3, 1.0)  # 2.25 -> 2
    assert d.next_window == 5
