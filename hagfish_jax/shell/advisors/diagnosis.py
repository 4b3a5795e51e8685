"""Heuristic diagnosis of learning curves: the offline reading of a trial.

:func:`diagnose` reads per-epoch rows (see
:data:`~hagfish_jax.shell.advisors.context.HISTORY_KEYS`) and names what went wrong
with a few flags, plus trend features that advisors (and ``analysis.json``) can use.
Everything here is plain Python and numpy; the thresholds are in :class:`Thresholds`.

Values may be missing: a key left out, ``None``, or a string that is not a number all
count as "not measured". A non-finite *loss* (NaN or infinity) counts as divergence,
except a loss column that is NaN from start to end while the other loss column has
finite values (a caller that wrote NaN for "not measured"); so does a non-finite
``val_score`` (a task's headline metric, NaN once its run diverged). Where no
validation accuracy is recorded, ``val_score`` stands in for it in the plateau,
slow-convergence and oscillation checks (never in those that read an accuracy's
scale: underfitting and the accuracy gap). Slopes are per row
(per epoch), fitted by least squares over the last ``window`` rows that have a value.

>>> rows = [{"epoch": e, "train_loss": 2.0 * 0.7 ** e, "val_loss": 2.0 * 0.7 ** e + 0.1}
...         for e in range(8)]
>>> diagnose(rows).flags
('slow_convergence',)
>>> diagnose(rows + [{"epoch": 8, "train_loss": float("nan")}]).flags
('divergence',)
>>> diagnose([{"val_loss": 1.0}, {"val_loss": 0.9}]).flags  # too short to say more
()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import curves

__all__ = [
    "DIVERGENCE",
    "FLAGS",
    "KEYWORDS",
    "OSCILLATION",
    "OVERFITTING",
    "PLATEAU",
    "SLOW_CONVERGENCE",
    "UNDERFITTING",
    "Diagnosis",
    "Thresholds",
    "diagnose",
]

OVERFITTING = "overfitting"
UNDERFITTING = "underfitting"
DIVERGENCE = "divergence"
PLATEAU = "plateau"
OSCILLATION = "oscillation"
SLOW_CONVERGENCE = "slow_convergence"

#: Every flag :func:`diagnose` may raise.
FLAGS = (DIVERGENCE, OSCILLATION, OVERFITTING, PLATEAU, SLOW_CONVERGENCE, UNDERFITTING)

#: Search phrases per flag, for an analyst that looks remedies up.
KEYWORDS: dict[str, tuple[str, ...]] = {
    DIVERGENCE: (
        "exploding loss",
        "learning rate too high",
        "gradient clipping",
        "NaN loss training",
    ),
    OVERFITTING: (
        "overfitting",
        "weight decay regularization",
        "dropout",
        "label smoothing",
        "data augmentation",
    ),
    UNDERFITTING: (
        "underfitting",
        "learning rate too low",
        "reduce regularization",
        "model capacity",
    ),
    PLATEAU: (
        "loss plateau",
        "learning rate decay",
        "learning rate schedule",
    ),
    OSCILLATION: (
        "oscillating validation loss",
        "learning rate too high",
        "larger batch size",
    ),
    SLOW_CONVERGENCE: (
        "slow convergence",
        "increase learning rate",
        "adam optimizer",
        "learning rate warmup",
    ),
}

_LOSSES = ("train_loss", "val_loss")
_METRICS = (
    "train_loss", "val_loss", "train_accuracy", "val_accuracy", "train_f1", "val_f1",
    "train_score", "val_score",
)
_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The numbers behind the flags. Relative quantities are fractions of the loss
    scale (the mean absolute value over the window), so one set works for losses of
    any size.

    Attributes:
      window: rows in the trailing window for slopes, plateau, oscillation (5). Long
        enough that one noisy epoch does not decide, short enough to describe "now".
      explode: divergence when the final training loss (the validation loss when no
        training loss is recorded) exceeds this multiple of the first one (3.0). A
        healthy run never ends three times worse than it started; overfitting raises
        the validation loss, which is why the training loss is preferred.
      rebound: divergence when the final training loss has climbed back above its best
        by more than this fraction (0.5) of both the progress made from the first epoch
        to the best and the best itself. The training objective should not give back
        half of what it learned; asking for both keeps noise around a tiny loss, and a
        zig-zag as large as the progress of a short history, from counting.
      gap_slope: overfitting needs the gap ``val_loss - train_loss`` to widen by more
        than this fraction of the loss scale per epoch over the window (0.02), ...
      val_rise: ... and the final validation loss to sit more than this fraction above
        its best (0.1): the gap widens *and* validation got worse, not just training
        better.
      acc_gap: overfitting also when the final train accuracy exceeds the validation
        accuracy by more than this (0.15, in accuracy points): a clear memorisation gap.
      underfit_accuracy: underfitting needs the final train accuracy (the validation
        accuracy if no train accuracy is recorded) below this (0.6) ...
      underfit_loss: ... or, with no accuracy at all, the final loss above this
        fraction of the first one (0.5: less than half the loss was learned away) ...
      small_gap: ... and a small gap: accuracy points (0.05) ...
      small_loss_gap: ... or, without accuracies, ``(val_loss - train_loss)`` at most
        this fraction of the training loss (0.1), and the training loss no longer
        falling fast (else it is slow convergence). A model that fits neither split
        needs capacity, a larger step or less regularisation.
      plateau_tol: plateau when the best validation loss (or accuracy) of the window
        improves on the best before it by less than this fraction (0.01). Suppressed
        by overfitting and underfitting, which explain the stall better.
      flip_fraction: oscillation needs the epoch-to-epoch changes of the validation
        loss to flip sign in at least this fraction of consecutive pairs (0.6) ...
      osc_std: ... and the spread of the validation loss around its linear trend over
        the window above this fraction of its mean (0.05). Small noise flips signs
        too; only a zig-zag of a few percent or more is worth a smaller step.
      slow_slope: slow convergence when the validation loss (the training loss
        without it) still falls by more than this fraction per epoch at the end
        (0.02, about 10% over a window of 5) while the training loss falls too: more
        epochs or a larger learning rate would pay off.
    """

    window: int = 5
    explode: float = 3.0
    rebound: float = 0.5
    gap_slope: float = 0.02
    val_rise: float = 0.1
    acc_gap: float = 0.15
    underfit_accuracy: float = 0.6
    underfit_loss: float = 0.5
    small_gap: float = 0.05
    small_loss_gap: float = 0.1
    plateau_tol: float = 0.01
    flip_fraction: float = 0.6
    osc_std: float = 0.05
    slow_slope: float = 0.02

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 3:
            raise ValueError(f"Thresholds: window must be an integer >= 3, got {self.window!r}")


class Diagnosis(NamedTuple):
    """The flags raised (sorted, unique) and JSON-safe trend features (``None``:
    unknown)."""

    flags: tuple[str, ...]
    features: dict[str, float | int | None]


# -- the checks ---------------------------------------------------------------------------
def _diverged(cols: dict[str, np.ndarray], bad: dict[str, np.ndarray], t: Thresholds) -> bool:
    if bad["val_score"].any():
        return True
    has_finite = {k: bool(np.isfinite(cols[k]).any()) for k in _LOSSES}
    for key in _LOSSES:
        if not bad[key].any():
            continue
        other = "val_loss" if key == "train_loss" else "train_loss"
        if not has_finite[key] and has_finite[other]:
            continue  # a whole column of NaN beside real losses: not measured
        return True
    primary = "train_loss" if has_finite["train_loss"] else "val_loss"
    f = curves.finite(cols[primary])
    if len(f) >= 2 and f[0] > 0 and f[-1] > t.explode * f[0]:
        return True
    f = curves.finite(cols["train_loss"])
    if len(f) >= 3:
        best = float(f.min())
        progress = float(f[0]) - best
        if progress > 0 and float(f[-1]) - best > t.rebound * max(progress, abs(best)):
            return True
    return False


def diagnose(
    history: Sequence[Mapping[str, Any]], thresholds: Thresholds | None = None
) -> Diagnosis:
    """Flags and trend features of a run's per-epoch rows (oldest first).

    Args:
      history: rows with (some of) ``epoch``, ``train_loss``, ``val_loss``,
        ``train_accuracy``, ``val_accuracy``, ...; missing values are allowed.
      thresholds: the numbers behind the flags; default :class:`Thresholds`.

    Returns:
      :class:`Diagnosis`. With fewer than three rows holding a finite metric only
      divergence can be flagged; divergence suppresses every other flag.
    """
    t = thresholds if thresholds is not None else Thresholds()
    history = list(history)
    cols: dict[str, np.ndarray] = {}
    bad: dict[str, np.ndarray] = {}
    for key in _METRICS:
        cols[key], bad[key] = curves.column(history, key)
    tl, vl = cols["train_loss"], cols["val_loss"]
    ta, va = cols["train_accuracy"], cols["val_accuracy"]
    # the trend checks read an accuracy, or else the task's own score (higher is better)
    vs = va if np.isfinite(va).any() else cols["val_score"]
    has_vs = bool(np.isfinite(vs).any())
    w = t.window

    features = curves.features(history, cols, w)
    measured = np.zeros(len(history), dtype=bool)
    for key in _METRICS:
        measured |= np.isfinite(cols[key])
    rows_ok = int(measured.sum())

    if history and _diverged(cols, bad, t):
        return Diagnosis((DIVERGENCE,), features)
    if rows_ok < 3:
        return Diagnosis((), features)

    flags: set[str] = set()
    has_tl, has_vl = bool(np.isfinite(tl).any()), bool(np.isfinite(vl).any())
    has_ta, has_va = bool(np.isfinite(ta).any()), bool(np.isfinite(va).any())

    # overfitting: the gap widens while validation gets worse, or a clear accuracy gap
    gap = vl - tl
    gap_rel = None
    if np.isfinite(gap).sum() >= 3:
        gx, gy = curves.tail(gap, w)
        s = curves.slope(gx, gy)
        if s is not None:
            gap_rel = s / curves.scale(vl[gx.astype(int)])
    val_best, val_final = (
        (float(curves.finite(vl).min()), curves.last(vl)) if has_vl else (None, None)
    )
    val_up = (
        val_best is not None
        and val_final is not None
        and val_final - val_best > t.val_rise * max(abs(val_best), _EPS)
    )
    acc_gap = None
    both_acc = np.isfinite(ta) & np.isfinite(va)
    if both_acc.any():
        i = np.flatnonzero(both_acc)[-1]
        acc_gap = float(ta[i] - va[i])
    if (gap_rel is not None and gap_rel > t.gap_slope and val_up) or (
        acc_gap is not None and acc_gap > t.acc_gap
    ):
        flags.add(OVERFITTING)

    # slow convergence: still falling clearly at the end
    primary = vl if has_vl else tl
    rel = curves.relative_slope(primary, w) if (has_vl or has_tl) else None
    train_rel = curves.relative_slope(tl, w) if has_tl else None
    if rel is not None:
        falling = rel < -t.slow_slope and (train_rel is None or train_rel < 0)
    else:
        acc_rel = curves.relative_slope(vs, w) if has_vs else None
        falling = acc_rel is not None and acc_rel > t.slow_slope
    if falling:
        flags.add(SLOW_CONVERGENCE)

    # underfitting: fits neither split, with a small gap, and no longer improving fast
    if has_ta:
        low = curves.last(ta) < t.underfit_accuracy
    elif has_va:
        low = curves.last(va) < t.underfit_accuracy
    else:
        lossy = tl if has_tl else vl
        first, last = curves.first(lossy), curves.last(lossy)
        low = first is not None and first > 0 and last > t.underfit_loss * first
    if acc_gap is not None:
        small = acc_gap < t.small_gap
    elif np.isfinite(gap).any():
        i = np.flatnonzero(np.isfinite(gap))[-1]
        small = gap[i] <= t.small_loss_gap * max(abs(tl[i]), _EPS)
    else:
        small = True
    if low and small and OVERFITTING not in flags and SLOW_CONVERGENCE not in flags:
        flags.add(UNDERFITTING)

    # plateau: the best value stopped improving
    if has_vl and np.isfinite(vl).sum() >= 3:
        imp = curves.improvement(vl, w, higher_is_better=False)
    elif has_vs and np.isfinite(vs).sum() >= 3:
        imp = curves.improvement(vs, w, higher_is_better=True)
    else:
        imp = curves.improvement(tl, w, higher_is_better=False)
    if imp is not None and imp < t.plateau_tol and not flags & {OVERFITTING, UNDERFITTING}:
        flags.add(PLATEAU)

    # oscillation: validation zig-zags by more than noise
    wobbly = vl if has_vl else (vs if has_vs else tl)
    flips, pairs, spread = curves.wobble(wobbly, w)
    if (
        flips is not None
        and pairs >= 2
        and flips >= t.flip_fraction * pairs
        and spread is not None
        and spread > t.osc_std
    ):
        flags.add(OSCILLATION)

    features["val_improvement"] = curves.plain(imp)
    return Diagnosis(tuple(sorted(flags)), features)
