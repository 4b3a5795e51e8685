"""The loop's controls: the meta-controller, regime detection and spawn noise."""

from __future__ import annotations

from hagfish_jax.shell.loop import Action, MetaController, Regime, RegimeDetector, spawn_noise


def test_meta_controller_priorities():
    mc = MetaController(max_spawns=2, gap_threshold=0.1, flat=0.5)
    flat = [0.5, 0.5, 0.5, 0.5]
    rising = [0.1, 0.3, 0.5, 0.7]
    assert mc.decide(flat, spawns_used=2) is Action.STOP
    assert mc.decide(flat[:2]) is Action.NO_OP
    assert mc.decide(flat, [0.9, 0.9, 0.9, 0.9]) is Action.PRUNE  # gap 0.44 of train
    widening = [0.5, 0.5, 0.5, 0.5], [0.5, 0.51, 0.53, 0.56]
    assert mc.decide(widening[0], widening[1]) is Action.PRUNE  # gap 0.06 but widening
    assert mc.decide(flat, flat) is Action.SPAWN
    assert mc.decide(rising, rising) is Action.NO_OP


def test_regime_classes():
    rd = RegimeDetector()
    assert rd.classify([0.1, 0.2, 0.3, 0.4, 0.5]) is Regime.TRENDING
    assert rd.classify([0.5, 0.51, 0.5, 0.51, 0.5, 0.51]) is Regime.RANGING
    assert rd.classify([0.5, 0.9, 0.2, 0.8, 0.1, 0.7]) is Regime.VOLATILE


def test_spawn_noise_bounds_and_monotonicity():
    values = [spawn_noise(s, g, c) for s in (0, 1, 10) for g in (0, 0.5, 2) for c in (-1, 0, 1)]
    assert all(0.02 <= v <= 0.5 for v in values)
    assert spawn_noise(0.0, 0.1, 0.5) >= spawn_noise(5.0, 0.1, 0.5)  # stalled: more noise
    assert spawn_noise(1.0, 0.4, 0.5) >= spawn_noise(1.0, 0.1, 0.5)  # bigger gap: more
    assert spawn_noise(1.0, 0.1, -0.5) >= spawn_noise(1.0, 0.1, 0.9)  # decorrelated: more
    assert spawn_noise(0.0, 5.0, -1.0, high=0.3) == 0.3


def test_a_healthy_run_is_not_pruned_whatever_the_scale_of_its_scores():
    mc = MetaController()
    val = [0.1, 0.3, 0.5, 0.7, 0.9]
    train = [v + 0.01 for v in val]  # a constant, small gap
    for scale, shift in ((1.0, 0.0), (1000.0, 0.0), (1.0, 1000.0), (1e-3, 0.0)):
        v = [scale * x + shift for x in val]
        t = [scale * x + shift for x in train]
        assert mc.decide(v, t) is Action.NO_OP, (scale, shift)
    for scale, shift in ((1.0, 0.0), (1000.0, 0.0), (1.0, 1000.0)):  # a gap that widens
        v = [scale * 0.5 + shift] * 5
        t = [scale * (0.5 + 0.04 * i) + shift for i in range(5)]
        assert mc.decide(v, t) is Action.PRUNE, (scale, shift)


def test_spawn_noise_is_largest_on_a_plateau_or_a_decline():
    slopes = [-10.0, -1.0, 0.0, 0.5, 1.0, 5.0, 20.0]
    noise = [spawn_noise(s, 0.1, 0.5) for s in slopes]
    assert noise[0] == noise[1] == noise[2]  # a decline explores as much as a plateau
    assert all(a >= b for a, b in zip(noise, noise[1:]))  # improving faster: less
    assert noise[2] > noise[-1]
