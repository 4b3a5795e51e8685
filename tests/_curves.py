"""Synthetic learning curves shared by the advisor tests (one per diagnosis flag)."""

from __future__ import annotations

import math


# ------------------------------------------------------------------ synthetic curves
def curve(n, train_loss=None, val_loss=None, train_acc=None, val_acc=None, start=0):
    """``n`` rows; each metric is a function of the epoch (or ``None``: left out)."""
    rows = []
    for e in range(start, start + n):
        row = {"epoch": e}
        for key, f in (
            ("train_loss", train_loss),
            ("val_loss", val_loss),
            ("train_accuracy", train_acc),
            ("val_accuracy", val_acc),
        ):
            if f is not None:
                row[key] = f(e)
        rows.append(row)
    return rows


def decay(e, tau):
    return math.exp(-e / tau)


CLEAN = curve(  # converges, still improving a little at the end: nothing to fix
    25,
    lambda e: 0.20 + 2 * decay(e, 4),
    lambda e: 0.25 + 2 * decay(e, 4),
    lambda e: 0.95 - 0.5 * decay(e, 4),
    lambda e: 0.90 - 0.5 * decay(e, 4),
)
OVERFIT = curve(  # train keeps falling, validation U-shaped (best at epoch 8)
    20,
    lambda e: 0.05 + 2 * decay(e, 4),
    lambda e: 0.6 + 0.004 * (e - 8) ** 2,
    lambda e: 1.0 - 0.5 * decay(e, 3),
    lambda e: 0.85 - 0.4 * decay(e, 3),
)
UNDERFIT = curve(  # both losses high and flat, accuracy low, no gap
    20,
    lambda e: 2.00 + 0.3 * decay(e, 1),
    lambda e: 2.05 + 0.3 * decay(e, 1),
    lambda e: 0.30 - 0.1 * decay(e, 1),
    lambda e: 0.29 - 0.1 * decay(e, 1),
)
PLATEAUED = curve(  # learned quickly, then flat at a good value
    20,
    lambda e: 0.3 + decay(e, 1),
    lambda e: 0.4 + decay(e, 1),
    lambda e: 0.95 - 0.5 * decay(e, 1),
    lambda e: 0.90 - 0.5 * decay(e, 1),
)
OSCILLATING = curve(  # zig-zags by 20% around a flat level
    20,
    lambda e: 0.45 + 0.05 * (-1) ** e,
    lambda e: 0.50 + 0.10 * (-1) ** e,
    lambda e: 0.80,
    lambda e: 0.78,
)
SLOW = curve(  # falling ~10% an epoch at the end
    15,
    lambda e: 2.0 * 0.9**e,
    lambda e: 2.1 * 0.9**e + 0.02,
    lambda e: 0.90 - 0.5 * 0.85**e,
    lambda e: 0.88 - 0.5 * 0.85**e,
)
NAN = curve(10, lambda e: 1 / (e + 1) if e < 7 else float("nan"), lambda e: 1.1 / (e + 1))
INF = curve(6, lambda e: 1 / (e + 1), lambda e: 1.1 / (e + 1) if e < 5 else float("inf"))
EXPLODING = curve(8, lambda e: 2 * 1.6**e, lambda e: 2 * 1.6**e)
REBOUND = curve(  # trains well, then the training loss climbs back far above its best
    12,
    lambda e: 2 * 0.6**e if e < 7 else 2 * 0.6**6 * 2.5 ** (e - 6),
    lambda e: 0.1 + 2 * 0.6**e,
)
DIVERGED = {"nan": NAN, "inf": INF, "exploding": EXPLODING, "rebound": REBOUND}

ALL = {
    "clean": CLEAN,
    "overfit": OVERFIT,
    "underfit": UNDERFIT,
    "plateau": PLATEAUED,
    "oscillation": OSCILLATING,
    "slow": SLOW,
    **DIVERGED,
}


# ------------------------------------------------------------------ diagnosis: flags
