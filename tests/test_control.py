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
