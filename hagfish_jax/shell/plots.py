"""Figures of a run directory (the ``plot`` extra: ``pip install 'hagfish-jax[plot]'``).

:func:`plot_run` reads a run directory written by :mod:`hagfish_jax.shell.records` and draws
every figure its data supports, each as a PNG in the run directory (or in ``out``):

``loss.png``
    training loss against the window, one line per trial (or population member).
``val_loss.png``
    validation loss against the window, one line per trial.
``accuracy.png``, ``f1.png``
    training (dashed) and validation (solid) accuracy or F1, one colour per trial.
``curves.png``
    the four above as one 2x2 panel (a panel with nothing recorded says so).
``hparams.png``
    the tuned hyperparameters (``run.json``'s ``"hparams"``) against the window: one
    subplot per name, one line per trial; a log scale where the values are positive and
    span more than a factor of 20.
``lineage.png``
    population-based training's family tree: window across, member slot up. A
    segment joins each member at window ``g`` to the member it continues at
    ``g - 1``: itself, or (in red) the parent whose weights it copied in an ``"exploit"``
    event. Points are coloured by the member's validation score at that window
    (``val_accuracy``, else ``score``). Drawn only when there are exploit events.
``cost_vs_score.png``
    one point per finished trial: its cost (``total_cost``, else ``cost``, from its
    summary) against its ``best_val_score`` (and ``test_score`` as crosses), named.

A figure whose data is absent is skipped; missing columns, empty cells and NaN values
are skipped too, never fatal. The figures are :class:`matplotlib.figure.Figure` objects
rendered by the Agg canvas, so neither pyplot's global state nor a display is involved.
From the shell: ``hagfish plot RUN_DIR [--out DIR]``. In Python::

    from hagfish_jax import plots

    for path in plots.plot_run("runs/demo"):
        print(path)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import records

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MISSING_MATPLOTLIB", "plot_run"]

MISSING_MATPLOTLIB = "hagfish plot needs matplotlib: pip install 'hagfish-jax[plot]'"

Rows = Mapping[str, Sequence[Mapping[str, Any]]]  # {trial: its rows, in recorded order}

_DPI = 110
_LEGEND_MAX = 12  # more trials than this: no legend (it would hide the lines)
_LOG_SPAN = 20.0  # positive values spanning more than this factor get a log axis

# panel: (title, y label, ((column, line style), ...)); the first column is labelled
_PANELS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "loss": ("Training loss", "loss", (("train_loss", "-"),)),
    "val_loss": ("Validation loss", "loss", (("val_loss", "-"),)),
    "accuracy": (
        "Accuracy (solid: validation, dashed: train)",
        "accuracy",
        (("val_accuracy", "-"), ("train_accuracy", "--")),
    ),
    "f1": ("F1 (solid: validation, dashed: train)", "F1", (("val_f1", "-"), ("train_f1", "--"))),
}


def _require_matplotlib() -> None:
    """Raise ``ImportError`` with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401  (first: a blocked package fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as err:
        raise ImportError(MISSING_MATPLOTLIB) from err


# -- data ------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, NaN, infinite, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _series(rows: Sequence[Mapping[str, Any]], column: str) -> tuple[list[float], list[float]]:
    """``(windows, values)`` of ``column``, sorted by window, where both are numbers."""
    points = []
    for i, row in enumerate(rows):
        x, y = _num(row.get("window", i)), _num(row.get(column))
        if x is not None and y is not None:
            points.append((x, y))
    points.sort()
    return [x for x, _ in points], [y for _, y in points]


def _values(rows: Rows, column: str) -> list[float]:
    """Every number recorded in ``column``, over all trials."""
    return [y for trial_rows in rows.values() for y in _series(trial_rows, column)[1]]


def _has(rows: Rows, *columns: str) -> bool:
    """Whether any trial recorded a number in any of ``columns``."""
    return any(_values(rows, c) for c in columns)


def _slots(trials: Iterable[str]) -> dict[int, str]:
    """Member slot -> trial name: each name's trailing number (``member_03`` -> 3) when
    those are distinct, else the position in sorted order."""
    trials = sorted(trials)
    numbers = [re.search(r"(\d+)$", t) for t in trials]
    if all(numbers) and len({int(n.group(1)) for n in numbers}) == len(trials):
        return {int(n.group(1)): t for n, t in zip(numbers, trials)}
    return dict(enumerate(trials))


def _exploits(events: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int], int]:
    """``{(window, member): parent}`` from the ``"exploit"`` events (the last wins)."""
    out = {}
    for e in events:
        if e.get("kind") != "exploit":
            continue
        window = e.get("window", e.get("generation"))  # older run directories
        fields = [_num(window), _num(e.get("member")), _num(e.get("parent"))]
        if None not in fields:
            g, m, p = (int(f) for f in fields)
            out[(g, m)] = p
    return out


Segment = tuple[tuple[int, int], tuple[int, int]]


def _lineage(
    exploits: Mapping[tuple[int, int], int], members: Sequence[int], first: int, last: int
) -> tuple[list[Segment], list[Segment]]:
    """``(continued, exploited)`` segments ``((g - 1, parent), (g, member))`` for every
    window ``g`` in ``first + 1 .. last`` and member: the parent is the one of the
    exploit event of ``(g, member)`` if any, else the member itself."""
    continued: list[Segment] = []
    exploited: list[Segment] = []
    for g in range(first + 1, last + 1):
        for m in members:
            parent = exploits.get((g, m), m)
            (continued if parent == m else exploited).append(((g - 1, parent), (g, m)))
    return continued, exploited


def _cost(summary: Mapping[str, Any]) -> float | None:
    """A trial summary's ``total_cost``, else its ``cost`` (``None`` if neither)."""
    for key in ("total_cost", "cost"):
        value = _num(summary.get(key))
        if value is not None:
            return value
    return None


# -- drawing helpers ---------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    """Render ``fig`` with the Agg canvas into ``path`` and release it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)
    fig.clear()
    return path


def _colours(trials: Sequence[str]) -> dict[str, Any]:
    """One colour per trial, the same in every figure."""
    from matplotlib import colormaps

    n = len(trials)
    if n <= 20:
        cmap = colormaps["tab10" if n <= 10 else "tab20"]
        return {t: cmap(i) for i, t in enumerate(trials)}
    cmap = colormaps["viridis"]
    return {t: cmap(i / (n - 1)) for i, t in enumerate(trials)}


def _integer_x(ax: Axes) -> None:
    """Whole-number ticks on the x axis (windows)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_if_wide(ax: Axes, values: Sequence[float], axis: str = "y") -> None:
    """A log scale on ``axis`` when ``values`` are positive and span more than 20x."""
    if values and min(values) > 0 and max(values) > _LOG_SPAN * min(values):
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _trial_lines(
    ax: Axes,
    rows: Rows,
    columns: Sequence[tuple[str, str]],
    colours: Mapping[str, Any],
    legend: bool = True,
) -> int:
    """One line per trial and column (in its style) against the window, one colour per
    trial, labelled once per trial. Returns how many lines were drawn."""
    drawn = 0
    for trial, trial_rows in rows.items():
        label: str | None = trial
        for column, style in columns:
            xs, ys = _series(trial_rows, column)
            if not xs:
                continue
            marker = "o" if len(xs) == 1 else None  # a lone point is still visible
            ax.plot(xs, ys, style, color=colours[trial], label=label, lw=1.2, marker=marker)
            label, drawn = None, drawn + 1
    if legend and drawn and len(rows) <= _LEGEND_MAX:
        ax.legend(fontsize="small")
    return drawn


def _panel(ax: Axes, rows: Rows, key: str, colours: Mapping[str, Any]) -> None:
    """One of :data:`_PANELS` on ``ax``; an empty one says it was not recorded."""
    title, ylabel, columns = _PANELS[key]
    if not _trial_lines(ax, rows, columns, colours):
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel="window", ylabel=ylabel)
    ax.grid(alpha=0.3)
    _integer_x(ax)


# -- figures -------------------------------------------------------------------------------


def _curves_figure(rows: Rows, keys: Sequence[str], colours: Mapping[str, Any]) -> Figure | None:
    """One panel (a single key) or a 2x2 grid of :data:`_PANELS`; ``None`` if all empty."""
    if not any(_has(rows, *(c for c, _ in _PANELS[k][2])) for k in keys):
        return None
    if len(keys) == 1:
        fig = _figure(8, 5)
        _panel(fig.add_subplot(), rows, keys[0], colours)
        return fig
    fig = _figure(12, 8.5)
    for ax, key in zip(fig.subplots(2, 2).flat, keys):
        _panel(ax, rows, key, colours)
    return fig


def _hparams_figure(
    rows: Rows, meta: Mapping[str, Any], colours: Mapping[str, Any]
) -> Figure | None:
    """One subplot per tuned hyperparameter recorded in the rows; ``None`` if none is."""
    names = meta.get("hparams") or []
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    names = [n for n in names if _has(rows, n)]
    if not names:
        return None
    fig = _figure(8, 1.2 + 2.2 * len(names))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, name) in enumerate(zip(axes, names)):
        _trial_lines(ax, rows, ((name, "-"),), colours, legend=i == 0)
        _log_if_wide(ax, _values(rows, name))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("window")
    _integer_x(axes[-1])
    fig.suptitle("Hyperparameters")
    return fig


def _lineage_figure(rows: Rows, events: Sequence[Mapping[str, Any]]) -> Figure | None:
    """PBT's family tree over windows; ``None`` without exploit events."""
    exploits = _exploits(events)
    if not exploits:
        return None
    from matplotlib.collections import LineCollection

    slots = _slots(rows)
    members = sorted(set(slots) | {m for _, m in exploits} | set(exploits.values()))
    windows = [x for trial_rows in rows.values() for x in _series(trial_rows, "window")[0]]
    first = min([0] + [g - 1 for g, _ in exploits])
    last = int(max([g for g, _ in exploits] + windows))
    continued, exploited = _lineage(exploits, members, first, last)

    fig = _figure(min(4.0 + 0.3 * (last - first), 16.0), min(2.0 + 0.4 * len(members), 12.0))
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(continued, colors="0.6", linewidths=1.0, zorder=1))
    ax.add_collection(
        LineCollection(exploited, colors="tab:red", linewidths=1.6, zorder=2, label="exploit")
    )

    key = "val_accuracy" if _has(rows, "val_accuracy") else "score"
    by_window = {
        slot: {int(x): y for x, y in zip(*_series(rows[trial], key))}
        for slot, trial in slots.items()
    }
    scored, unscored = [], []
    for g in range(first, last + 1):
        for m in members:
            score = by_window.get(m, {}).get(g)
            if score is None:
                unscored.append((g, m))
            else:
                scored.append((g, m, score))
    if scored:
        gs, ms, scores = zip(*scored)
        points = ax.scatter(gs, ms, c=scores, cmap="viridis", s=28, zorder=3)
        fig.colorbar(points, ax=ax, label=key)
    if unscored:
        gs, ms = zip(*unscored)
        ax.scatter(gs, ms, facecolors="none", edgecolors="0.5", s=20, zorder=3, label="no score")
    ax.autoscale_view()
    _integer_x(ax)
    if len(members) <= 24:
        ax.set_yticks(members, [slots.get(m, str(m)) for m in members])
    ax.set(title="Lineage (red: copied the weights of another member)", xlabel="window")
    ax.set_ylabel("member")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _cost_vs_score_figure(summaries: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """Cost against best validation (and test) score per finished trial; ``None`` when no
    summary has both a cost and a ``best_val_score``."""
    points = []
    for name, summary in summaries.items():
        cost, val = _cost(summary), _num(summary.get("best_val_score"))
        if cost is not None and val is not None:
            points.append((name, cost, val, _num(summary.get("test_score"))))
    if not points:
        return None
    fig = _figure(8, 5.5)
    ax = fig.add_subplot()
    names, costs, vals, tests = zip(*points)
    ax.scatter(costs, vals, marker="o", label="best val score", zorder=3)
    tested = [(c, t) for c, t in zip(costs, tests) if t is not None]
    if tested:
        ax.scatter(*zip(*tested), marker="x", label="test score", zorder=3)
    for name, cost, val in zip(names, costs, vals):
        ax.annotate(name, (cost, val), xytext=(4, 4), textcoords="offset points", fontsize=8)
    _log_if_wide(ax, costs, "x")
    ax.margins(x=0.15, y=0.1)  # room for the names
    ax.set(title="Cost vs score (one point per finished trial)", xlabel="cost", ylabel="score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> list[Path]:
    """Draw every figure the run directory's data supports (see the module docstring).

    Args:
      run_dir: a run directory written by :class:`hagfish_jax.shell.records.RunRecords`.
      out: where to write the PNGs (created if missing); default ``run_dir``.

    Returns:
      The written paths, in the order of the module docstring.

    Raises:
      FileNotFoundError: ``run_dir`` is missing or has no ``trials/`` folder.
      ImportError: matplotlib is not installed.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is a file; RUN_DIR must be a run directory")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} does not exist")
    if not (run_dir / "trials").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no trials/ folder)")
    _require_matplotlib()
    run = records.read_run(run_dir)
    rows = {trial: trial_rows for trial, trial_rows in run["rows"].items() if trial_rows}
    colours = _colours(list(rows))
    figures: list[tuple[str, Callable[[], Figure | None]]] = [
        ("loss.png", lambda: _curves_figure(rows, ["loss"], colours)),
        ("val_loss.png", lambda: _curves_figure(rows, ["val_loss"], colours)),
        ("accuracy.png", lambda: _curves_figure(rows, ["accuracy"], colours)),
        ("f1.png", lambda: _curves_figure(rows, ["f1"], colours)),
        ("curves.png", lambda: _curves_figure(rows, list(_PANELS), colours)),
        ("hparams.png", lambda: _hparams_figure(rows, run["meta"], colours)),
        ("lineage.png", lambda: _lineage_figure(rows, run["events"])),
        ("cost_vs_score.png", lambda: _cost_vs_score_figure(run["summaries"])),
    ]
    out = run_dir if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in figures:
        fig = draw()
        if fig is not None:
            written.append(_save(fig, out / name))
    return written
