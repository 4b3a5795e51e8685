"""The run directory of a demo run (see :mod:`hagfish_jax.shell.records`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .run import write_rows
from .summary import DemoRun

__all__ = ["write_run"]


def _by_trial(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        name = f"member_{int(row['member']):02d}" if "member" in row else "run"
        out.setdefault(name, []).append(row)
    return out


def write_run(out: str | os.PathLike, run: DemoRun, records: Any = None) -> Path:
    """Write a run directory: ``run.json``, per-member (or ``run``) ``metrics.csv`` and
    ``summary.json``, ``events.jsonl``, ``trials_summary.csv``, ``best_overall.json`` and
    the run's ``summary.json``; PNG plots when matplotlib is installed. Rows already
    recorded (an incremental or repeated write) are not duplicated; a directory holding
    another run (a different task or tuner) is replaced. ``records``: the
    :class:`~hagfish_jax.shell.records.RunRecords` already open on ``out`` (the run wrote
    its rows there as it went), else the directory is opened here."""
    from .. import plots
    from ..records import RunRecords
    from .run import record_names

    summary = run.summary
    score = run.meta.get("score") or record_names(summary)["score"]
    if records is None:
        records = RunRecords(out, meta=run.meta, on_mismatch="replace")
    else:  # the run's identity beside the options it was opened with
        records.meta.update(run.meta)
        records.write_meta()
    write_rows(records, run.rows, run.events)
    for trial, trial_rows in sorted(_by_trial(run.rows).items()):
        scores = np.array([r[score] for r in trial_rows], np.float64)
        finite = np.where(np.isfinite(scores), scores, -np.inf)
        best = trial_rows[int(np.argmax(finite))]
        trial_summary = {
            "best_val_score": float(np.max(finite)) if np.isfinite(finite).any() else None,
            "best_window": best["window"],
            "windows": len(trial_rows),
            "cost": float(sum(r.get("cost", 0.0) for r in trial_rows)),
            "hparams": {n: best[n] for n in run.meta.get("hparams", []) if n in best},
        }
        member = best.get("member")
        if trial == "run" or member == summary.best_member:
            trial_summary["test_score"] = summary.test_score
        records.finish_trial(trial, trial_summary)
    if summary.best_window >= 0:  # the Loop's best (ties to the lower validation loss)
        one = summary.population is None
        records.write_best("run" if one else f"member_{int(summary.best_member):02d}")
    records.write_summary(summary.to_dict())
    try:
        plots.plot_run(records.path)
    except ImportError:  # matplotlib is not installed
        pass
    return records.path
