"""The curve helpers and each check of the diagnosis, at its edges: two points, a
flat zero curve, negative scores, fractional epochs, and every flag's conditions."""

from __future__ import annotations

import numpy as np
import pytest

from hagfish_jax.shell.advisors import curves
from hagfish_jax.shell.advisors.diagnosis import diagnose


def test_two_points_have_a_slope():
    assert curves.slope(np.array([0.0, 1.0]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    assert curves.slope(np.array([0.0]), np.array([1.0])) is None
    feats = diagnose([{"val_loss": 1.0}, {"val_loss": 0.5}]).features
    assert feats["val_loss_slope"] == pytest.approx(-0.5)


def test_an_all_zero_curve_does_not_divide_by_zero():
    zeros = np.zeros(6)
    assert curves.relative_slope(zeros, 5) == 0.0
    flips, pairs, spread = curves.wobble(zeros, 5)
    assert (flips, pairs, spread) == (0, 3, 0.0)
    rows = [{"epoch": e, "train_loss": 0.0, "val_loss": 0.0} for e in range(6)]
    d = diagnose(rows)
    assert "divergence" not in d.flags and d.features["val_loss_std"] == 0.0


def test_improvement_of_negative_scores_is_relative_to_their_size():
    assert curves.improvement(np.array([-2.0, -1.0]), 1, True) == pytest.approx(0.5)
    assert curves.improvement(np.array([-2.0, -3.0]), 1, False) == pytest.approx(0.5)


def test_wobble_counts_flips_and_pairs():
    flips, pairs, spread = curves.wobble(np.array([1.0, 2.0, 1.0]), 5)
    assert (flips, pairs) == (1, 1) and spread is not None
    flips, pairs, _ = curves.wobble(np.array([1.0, 2.0, 1.0, 2.0, 1.0]), 5)
    assert (flips, pairs) == (3, 3)
    flips, pairs, _ = curves.wobble(np.array([1.0, 1.0, 1.0, 2.0]), 5)
    assert (flips, pairs) == (0, 2)
    assert curves.wobble(np.array([1.0, 2.0]), 5) == (None, 0, None)


def test_a_fractional_epoch_is_kept():
    rows = [{"epoch": 0.5, "val_loss": 2.0}, {"epoch": 1.5, "val_loss": 1.0},
            {"epoch": 2.0, "val_loss": 1.5}]
    assert diagnose(rows).features["best_epoch"] == 1.5
    rows[1]["epoch"] = 1.0
    best = diagnose(rows).features["best_epoch"]
    assert best == 1 and isinstance(best, int)


def test_numbers_written_as_text_are_read():
    assert curves.number(" 0.25 ") == 0.25
    assert curves.number("n/a") is None
    values, bad = curves.column([{"val_loss": "0.5"}, {"val_loss": "nan"}], "val_loss")
    assert values[0] == 0.5 and np.isnan(values[1]) and bad.tolist() == [False, True]


def _train(values):
    return [{"epoch": e, "train_loss": v} for e, v in enumerate(values)]


def test_a_loss_that_never_fell_is_not_a_rebound():
    # a training loss that rises from its first epoch (to 1.6x, below the 3x
    # explosion) never fell, so it cannot have rebounded
    assert "divergence" not in diagnose(_train([1.0, 1.2, 1.6])).flags


def test_a_small_rebound_above_a_large_best_is_not_divergence():
    # back up by 0.1 after a progress of 0.1, but the best is 0.9 (only 11% up)
    assert "divergence" not in diagnose(_train([1.0, 0.9, 1.0])).flags
    # both conditions met: a real rebound
    assert "divergence" in diagnose(_train([1.0, 0.2, 0.9])).flags


def test_a_widening_gap_while_validation_improves_is_not_overfitting():
    tl = [1.0, 0.7, 0.45, 0.25, 0.1]
    rows = [{"epoch": e, "train_loss": t, "val_loss": v}
            for e, (t, v) in enumerate(zip(tl, [1.05, 0.95, 0.88, 0.83, 0.80]))]
    assert "overfitting" not in diagnose(rows).flags
    rows = [{"epoch": e, "train_loss": t, "val_loss": v}
            for e, (t, v) in enumerate(zip(tl, [1.05, 0.95, 0.9, 0.95, 1.05]))]
    assert "overfitting" in diagnose(rows).flags


def _rows(**cols):
    n = len(next(iter(cols.values())))
    return [{"epoch": e, **{k: v[e] for k, v in cols.items()}} for e in range(n)]


def test_validation_falling_while_training_rises_is_not_slow_convergence():
    rows = _rows(train_loss=[0.5, 0.55, 0.6, 0.65, 0.7], val_loss=[2.0, 1.6, 1.3, 1.05, 0.85])
    assert "slow_convergence" not in diagnose(rows).flags


def test_a_rising_accuracy_without_losses_is_slow_convergence():
    assert "slow_convergence" in diagnose(_rows(val_accuracy=[0.2, 0.3, 0.4, 0.5, 0.6])).flags
    assert "slow_convergence" in diagnose(_rows(val_score=[0.2, 0.3, 0.4, 0.5, 0.6])).flags


def test_slow_convergence_suppresses_underfitting():
    tl = [2.0, 1.6, 1.3, 1.05, 0.85]
    ta = [0.2, 0.25, 0.3, 0.35, 0.4]
    rows = _rows(train_loss=tl, val_loss=[x + 0.05 for x in tl],
                 train_accuracy=ta, val_accuracy=[x - 0.01 for x in ta])
    assert diagnose(rows).flags == ("slow_convergence",)


def test_underfitting_suppresses_plateau():
    rows = _rows(train_loss=[1.0] * 5, val_loss=[1.02] * 5,
                 train_accuracy=[0.3] * 5, val_accuracy=[0.29] * 5)
    assert diagnose(rows).flags == ("underfitting",)


def test_four_values_can_oscillate():
    assert "oscillation" in diagnose(_rows(val_loss=[1.0, 1.5, 1.0, 1.5])).flags


def test_a_zig_zag_within_noise_is_not_oscillation():
    assert "oscillation" not in diagnose(_rows(val_loss=[1.0, 1.01, 1.0, 1.01, 1.0])).flags
    assert "oscillation" in diagnose(_rows(val_loss=[1.0, 1.5, 1.0, 1.5, 1.0])).flags
