"""Offline advice, part one: the diagnosis of learning curves (flags, features,
thresholds). Plain Python, no compilation."""

from __future__ import annotations

import json

import pytest
from _curves import (
    ALL,
    CLEAN,
    DIVERGED,
    OSCILLATING,
    OVERFIT,
    PLATEAUED,
    SLOW,
    UNDERFIT,
    curve,
    decay,
)

from hagfish_jax.shell.advisors.diagnosis import (
    DIVERGENCE,
    FLAGS,
    KEYWORDS,
    OSCILLATION,
    OVERFITTING,
    PLATEAU,
    SLOW_CONVERGENCE,
    UNDERFITTING,
    Diagnosis,
    Thresholds,
    diagnose,
)


def test_flag_constants():
    assert set(FLAGS) == {
        "overfitting", "underfitting", "divergence", "plateau", "oscillation",
        "slow_convergence",
    }
    assert len(FLAGS) == 6
    for flag in FLAGS:
        assert KEYWORDS[flag] and all(isinstance(k, str) and k for k in KEYWORDS[flag])


def test_clean_run_has_no_flags():
    assert diagnose(CLEAN).flags == ()


@pytest.mark.parametrize(
    "rows, wanted, absent",
    [
        (OVERFIT, OVERFITTING, {UNDERFITTING, DIVERGENCE, SLOW_CONVERGENCE, PLATEAU, OSCILLATION}),
        (UNDERFIT, UNDERFITTING, {OVERFITTING, DIVERGENCE, SLOW_CONVERGENCE, OSCILLATION}),
        (PLATEAUED, PLATEAU, {OVERFITTING, UNDERFITTING, DIVERGENCE, SLOW_CONVERGENCE,
                              OSCILLATION}),
        (OSCILLATING, OSCILLATION, {OVERFITTING, UNDERFITTING, DIVERGENCE, SLOW_CONVERGENCE}),
        (SLOW, SLOW_CONVERGENCE, {OVERFITTING, UNDERFITTING, DIVERGENCE, PLATEAU, OSCILLATION}),
    ],
    ids=["overfitting", "underfitting", "plateau", "oscillation", "slow_convergence"],
)
def test_each_curve_gets_its_flag_and_not_the_others(rows, wanted, absent):
    flags = diagnose(rows).flags
    assert wanted in flags
    assert not set(flags) & absent, flags


@pytest.mark.parametrize("name", sorted(DIVERGED))
def test_divergence_suppresses_everything_else(name):
    assert diagnose(DIVERGED[name]).flags == (DIVERGENCE,)


def test_flags_sorted_and_unique():
    for rows in ALL.values():
        flags = diagnose(rows).flags
        assert list(flags) == sorted(set(flags))
        assert set(flags) <= set(FLAGS)


def test_overfitting_from_the_accuracy_gap_alone():
    rows = curve(10, train_acc=lambda e: 0.6 + 0.04 * e, val_acc=lambda e: 0.6 + 0.005 * e)
    assert OVERFITTING in diagnose(rows).flags
    close = curve(10, train_acc=lambda e: 0.6 + 0.03 * e, val_acc=lambda e: 0.59 + 0.03 * e)
    assert OVERFITTING not in diagnose(close).flags


def test_underfitting_from_losses_alone():
    rows = curve(10, lambda e: 2.0 - 0.001 * e, lambda e: 2.05 - 0.001 * e)
    flags = diagnose(rows).flags
    assert UNDERFITTING in flags and OVERFITTING not in flags


def test_short_history_can_only_diverge():
    # two rows that would look like overfitting or explosion in a longer run
    assert diagnose([{"train_loss": 1.0, "val_loss": 1.0}, {"train_loss": 0.5,
                                                            "val_loss": 2.0}]).flags == ()
    assert diagnose([{"val_loss": 1.0}, {"val_loss": float("nan")}]).flags == (DIVERGENCE,)
    assert diagnose([{"train_loss": 1.0}, {"train_loss": 5.0}]).flags == (DIVERGENCE,)
    assert diagnose([]).flags == ()
    assert diagnose([]).features["epochs"] == 0


def test_missing_values_are_not_divergence():
    rows = [dict(r) for r in PLATEAUED]
    rows[0] = {"epoch": 0, "val_loss": rows[0]["val_loss"]}  # no train metrics
    rows[3]["train_loss"] = None
    rows[4]["val_accuracy"] = "n/a"
    rows[5].pop("train_accuracy")
    d = diagnose(rows)
    assert DIVERGENCE not in d.flags and PLATEAU in d.flags
    # a column of NaN beside real losses means "not measured"
    only_val = [{**r, "train_loss": float("nan")} for r in PLATEAUED]
    assert DIVERGENCE not in diagnose(only_val).flags
    # but a NaN after finite values of the same column is a diverged run
    late = [dict(r) for r in PLATEAUED]
    late[-1]["val_loss"] = float("nan")
    assert diagnose(late).flags == (DIVERGENCE,)


def test_noise_at_a_tiny_loss_is_not_divergence():
    rows = curve(12, lambda e: 1e-3 + 2 * decay(e, 1) + (2e-4 if e % 2 else 0.0),
                 lambda e: 0.3 + 2 * decay(e, 1))
    assert DIVERGENCE not in diagnose(rows).flags


def test_thresholds():
    with pytest.raises(ValueError, match="window"):
        Thresholds(window=2)
    # a stricter plateau tolerance calls the clean run a plateau
    assert PLATEAU in diagnose(CLEAN, Thresholds(plateau_tol=0.1)).flags
    assert diagnose(CLEAN, Thresholds()).flags == diagnose(CLEAN).flags


# ------------------------------------------------------------------ diagnosis: features
FEATURE_KEYS = {
    "epochs", "best_epoch", "best_val_loss", "best_val_accuracy", "final_train_loss",
    "final_val_loss", "final_train_accuracy", "final_val_accuracy", "gap", "gap_slope",
    "val_loss_slope", "train_loss_slope", "val_loss_std", "sign_flips",
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_features_are_json_safe(name):
    d = diagnose(ALL[name])
    assert isinstance(d, Diagnosis)
    assert FEATURE_KEYS <= set(d.features)
    json.dumps(d.features, allow_nan=False)
    for v in d.features.values():
        assert v is None or type(v) in (int, float)


def test_feature_values():
    f = diagnose(OVERFIT).features
    assert f["epochs"] == 20
    assert f["best_epoch"] == 8
    assert f["best_val_loss"] == pytest.approx(0.6)
    assert f["final_val_loss"] == pytest.approx(0.6 + 0.004 * 121)
    assert f["gap"] == pytest.approx(f["final_val_loss"] - f["final_train_loss"])
    assert f["gap_slope"] > 0 and f["val_loss_slope"] > 0 and f["train_loss_slope"] < 0
    assert f["final_train_accuracy"] > f["final_val_accuracy"]
    osc = diagnose(OSCILLATING).features
    assert osc["sign_flips"] == 3 and osc["val_loss_std"] > 0.1
    assert diagnose(SLOW).features["sign_flips"] == 0
    # the best epoch is the row's epoch, by accuracy when there is no loss
    rows = curve(6, val_acc=lambda e: [0.5, 0.7, 0.9, 0.8, 0.85, 0.8][e - 10], start=10)
    g = diagnose(rows).features
    assert g["best_epoch"] == 12 and g["best_val_accuracy"] == pytest.approx(0.9)
    assert g["best_val_loss"] is None and g["gap"] is None and g["val_loss_slope"] is None


# ------------------------------------------------------------------ consultant
