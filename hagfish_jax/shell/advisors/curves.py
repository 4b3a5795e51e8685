"""Series and trend features of learning curves: the numeric helpers of the diagnosis.

Rows are read into float columns (NaN where a value is missing or not finite), and
trailing windows of those columns give slopes, improvements and wobble.

>>> import numpy as np
>>> relative_slope(np.array([4.0, 3.0, np.nan, 1.0]), window=3) < 0
True
>>> plain(float("nan")) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "column",
    "features",
    "finite",
    "first",
    "improvement",
    "last",
    "number",
    "plain",
    "relative_slope",
    "scale",
    "slope",
    "tail",
    "wobble",
]

EPS = 1e-12


def number(value: Any) -> float | None:
    """A float, or ``None`` when ``value`` is not a number (bools are not numbers)."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def column(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values, nonfinite)``: values with NaN where missing or non-finite, and a mask
    of the rows that hold a number that is not finite."""
    raw = [number(row.get(key)) if isinstance(row, Mapping) else None for row in history]
    values = np.array([np.nan if v is None or not math.isfinite(v) else v for v in raw])
    nonfinite = np.array([v is not None and not math.isfinite(v) for v in raw], dtype=bool)
    return values.reshape(-1), nonfinite.reshape(-1)


def finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def tail(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions and values of the last ``window`` finite entries."""
    idx = np.flatnonzero(np.isfinite(values))[-window:]
    return idx.astype(float), values[idx]


def slope(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(y) < 2:
        return None
    dx = x - x.mean()
    denom = float(np.sum(dx * dx))
    return None if denom == 0.0 else float(np.sum(dx * (y - y.mean())) / denom)


def scale(y: np.ndarray) -> float:
    return max(float(np.mean(np.abs(y))), EPS) if len(y) else EPS


def relative_slope(values: np.ndarray, window: int) -> float | None:
    x, y = tail(values, window)
    s = slope(x, y)
    return None if s is None else s / scale(y)


def last(values: np.ndarray) -> float | None:
    f = finite(values)
    return float(f[-1]) if len(f) else None


def first(values: np.ndarray) -> float | None:
    f = finite(values)
    return float(f[0]) if len(f) else None


def plain(value: float | None) -> float | None:
    """JSON-safe: ``None`` for unknown or non-finite."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def improvement(values: np.ndarray, window: int, higher_is_better: bool) -> float | None:
    """Relative improvement of the window's best on the best before it."""
    f = finite(values)
    if len(f) < 2:
        return None
    w = min(window, len(f) - 1)
    before, recent = f[:-w], f[-w:]
    if higher_is_better:
        ref, now = float(before.max()), float(recent.max())
        return (now - ref) / max(abs(ref), EPS)
    ref, now = float(before.min()), float(recent.min())
    return (ref - now) / max(abs(ref), EPS)


def wobble(values: np.ndarray, window: int) -> tuple[int | None, int, float | None]:
    """``(sign flips, consecutive pairs, relative spread around the trend)`` of the
    last ``window`` finite values."""
    x, y = tail(values, window)
    if len(y) < 3:
        return None, 0, None
    signs = np.sign(np.diff(y))
    pairs = len(signs) - 1
    flips = int(np.sum(signs[1:] * signs[:-1] < 0))
    s = slope(x, y) or 0.0
    residual = y - (y.mean() + s * (x - x.mean()))
    return flips, pairs, float(np.std(residual)) / scale(y)


def features(
    history: list[Mapping[str, Any]], cols: dict[str, np.ndarray], w: int
) -> dict[str, float | int | None]:
    """The trend features: best and final values, the final gap, trailing slopes,
    the relative spread of the validation loss and its sign flips."""
    tl, vl = cols["train_loss"], cols["val_loss"]
    ta, va = cols["train_accuracy"], cols["val_accuracy"]

    def epoch_of(i: int) -> int | float:
        e = number(history[i].get("epoch")) if isinstance(history[i], Mapping) else None
        if e is None or not math.isfinite(e):
            return i
        return int(e) if e == int(e) else e

    best_epoch = None
    if np.isfinite(vl).any():
        best_epoch = epoch_of(int(np.nanargmin(vl)))
    elif np.isfinite(va).any():
        best_epoch = epoch_of(int(np.nanargmax(va)))
    gap = vl - tl
    final_gap = last(gap)
    gx, gy = tail(gap, w)
    vx, vy = tail(vl, w)
    tx, ty = tail(tl, w)
    flips, _, spread = wobble(vl, w)
    return {
        "epochs": len(history),
        "best_epoch": best_epoch,
        "best_val_loss": plain(float(np.nanmin(vl))) if np.isfinite(vl).any() else None,
        "best_val_accuracy": plain(float(np.nanmax(va))) if np.isfinite(va).any() else None,
        "final_train_loss": plain(last(tl)),
        "final_val_loss": plain(last(vl)),
        "final_train_accuracy": plain(last(ta)),
        "final_val_accuracy": plain(last(va)),
        "gap": plain(final_gap),
        "gap_slope": plain(slope(gx, gy)),
        "val_loss_slope": plain(slope(vx, vy)),
        "train_loss_slope": plain(slope(tx, ty)),
        "val_loss_std": plain(spread),
        "sign_flips": flips,
        "val_improvement": None,
    }
