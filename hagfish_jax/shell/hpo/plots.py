"""A trial's figures: loss, validation loss, accuracy, F1 and all four together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_trial"]

_PANELS = (
    ("loss.png", "loss", ("train_loss", "val_loss")),
    ("val_loss.png", "validation loss", ("val_loss",)),
    ("accuracy.png", "accuracy", ("train_accuracy", "val_accuracy")),
    ("f1.png", "macro F1", ("train_f1", "val_f1")),
)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        v = row.get(key)
        if isinstance(v, (int, float)) and v == v:
            xs.append(float(row.get("epoch", len(xs))))
            ys.append(float(v))
    return xs, ys


def plot_trial(rows: Sequence[Mapping[str, Any]], out: str | Path) -> list[Path]:
    """Draw ``loss.png``, ``val_loss.png``, ``accuracy.png``, ``f1.png`` and
    ``combined.png`` into ``out`` from per-epoch rows; returns the paths written
    (none without matplotlib or without rows)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # plots are an extra: the records do not need them
        return []
    if not rows:
        return []
    out = Path(out)
    written = []

    def draw(ax, title: str, keys: Sequence[str]) -> None:
        for key in keys:
            xs, ys = _series(rows, key)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(loc="best", fontsize=8)

    for name, title, keys in _PANELS:
        fig = Figure(figsize=(5, 3.5))
        draw(fig.add_subplot(1, 1, 1), title, keys)
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        written.append(out / name)
    fig = Figure(figsize=(9, 6.5))
    for i, (_, title, keys) in enumerate(_PANELS):
        draw(fig.add_subplot(2, 2, i + 1), title, keys)
    fig.tight_layout()
    fig.savefig(out / "combined.png", dpi=80)
    written.append(out / "combined.png")
    return written
