"""Run records that survive interruption: CSV metrics, JSONL events, JSON summaries.

A run directory looks like this::

    RUN_DIR/
      run.json                 what the run is: task, tuner, hyperparameter names, ...
      summary.json             the run's own summary (written by the run when it ends)
      events.jsonl             one JSON object a line: transitions, exploits, rollbacks, advice
      trials/<name>/metrics.csv    one row per window of a member or trial
                                   (metrics_epoch.csv for ``hagfish hpo``'s trials)
      trials/<name>/summary.json   that member's or trial's summary
      trials_summary.csv       one row per finished trial (its summary, flattened)
      best_overall.json        the finished trial with the best selection score
      tensorboard/             TensorBoard event files, with ``tensorboard=True``
                               (see :mod:`hagfish_jax.shell.tensorboard`)

Every file is written whole to a temporary name in the same folder and renamed over
the old one (``os.replace`` is atomic on POSIX and Windows), so a run killed at any
moment leaves each file either as it was or as it is meant to be; stray temporary
files are ignored and removed on the next open. Opening an existing directory
continues it: rows are keyed by their ``window`` and events by their content, so
logging what was already recorded (a resumed run replaying its last windows) adds no
duplicates.

Columns the plots understand (any others are kept and ignored by them): ``window``,
``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``, ``train_f1``,
``val_f1``, ``cost``, and the hyperparameter names listed in ``run.json`` under
``"hparams"``. Event kinds the plots understand: ``"exploit"`` with ``window``,
``member`` and ``parent``.

>>> import tempfile, hagfish_jax as hj
>>> rec = hj.records.RunRecords(tempfile.mkdtemp(), meta={"hparams": ["learning_rate"]})
>>> rec.log("trial_000", [{"window": 0, "val_accuracy": 0.5, "learning_rate": 0.01}])
1
>>> rec.log("trial_000", [{"window": 0, "val_accuracy": 0.5, "learning_rate": 0.01},
...                       {"window": 1, "val_accuracy": 0.7, "learning_rate": 0.01}])
1
>>> [r["val_accuracy"] for r in rec.rows("trial_000")]
[0.5, 0.7]
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._files import (
    _NAME,
    _TMP_PREFIX,
    _append,
    _csv_text,
    _flatten,
    _json,
    _plain,
    _read_csv,
    _repair_tail,
    _whole_lines,
    write_atomic,
)
from .tensorboard import TensorBoardWriter, _tensorboardx, to_tensorboard

__all__ = ["DamagedRecordError", "RunRecords", "read_run", "to_tensorboard", "write_atomic"]

#: the names a trial's per-window metrics file may have: ``metrics.csv`` (the Loop,
#: the demo, the budget trials) or ``metrics_epoch.csv`` (``hagfish hpo``'s trials)
METRICS_NAMES = ("metrics.csv", "metrics_epoch.csv")



class RunRecords:
    """A run directory, opened for writing; an existing one is continued.

    Args:
      path: the run directory (created if missing).
      meta: what the run is (task, tuner, ``"hparams"``: the tuned names, ...), saved
        as ``run.json``; merged into an existing ``run.json`` when continuing.
      select: the summary key that ranks finished trials for ``best_overall.json``
        (higher is better).
      metrics_name: the per-trial metrics file, one of :data:`METRICS_NAMES`, of the
        trials this object starts; a trial already recorded goes on in its own file.
      on_mismatch: what to do when the directory holds another run (a key of
        ``meta`` recorded there with a different value): ``"error"`` (default: a
        ``ValueError`` naming the keys, so two runs never mix) or ``"replace"``
        (clear the old records first).
      tensorboard: also write TensorBoard event files as rows and events are
        recorded (:class:`~hagfish_jax.shell.tensorboard.TensorBoardWriter`): a log
        directory, or ``True`` for ``path/tensorboard``. Needs the ``tensorboard``
        extra (an ``ImportError`` saying so, before anything is written).

    Rows and events are appended (one write and one ``fsync`` per call, whatever the
    size of the file), and a half-written last line left by a killed process is cut
    off when the directory is opened again. The directory is locked for the life of
    this object (:class:`~hagfish_jax.shell.lock.DirectoryLock`): another process
    opening it for writing gets a :class:`~hagfish_jax.shell.lock.LockedError` naming
    the holder; :meth:`close` (or the end of a ``with`` block) releases it, and an
    open that fails (another run there, a damaged file) releases it before raising.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        meta: Mapping[str, Any] | None = None,
        select: str = "best_val_score",
        on_mismatch: str = "error",
        metrics_name: str = "metrics.csv",
        tensorboard: str | os.PathLike | bool | None = None,
    ) -> None:
        self._tb: TensorBoardWriter | None = None
        if tensorboard is True:
            tensorboard = Path(path) / "tensorboard"
        if tensorboard not in (None, False) and not isinstance(tensorboard, (str, os.PathLike)):
            raise TypeError(f"records: tensorboard is a directory or True, got {tensorboard!r}")
        if tensorboard:
            _tensorboardx()  # the missing extra is reported before anything is written
        if on_mismatch not in ("error", "replace"):
            raise ValueError(
                f"records: on_mismatch must be 'error' or 'replace', got {on_mismatch!r}"
            )
        from .lock import DirectoryLock

        if metrics_name not in METRICS_NAMES:
            raise ValueError(f"records: metrics_name must be one of {METRICS_NAMES}")
        self.metrics_name = metrics_name
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"records: {self.path} is a file, not a run directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.select = str(select)
        self._lock = DirectoryLock(self.path, "run directory").acquire()
        try:
            self._open(meta, on_mismatch, tensorboard)
        except BaseException:  # a directory this object failed to open stays free
            if self._tb is not None:
                self._tb.close()
            self._lock.release()
            raise

    def _open(self, meta, on_mismatch: str, tensorboard) -> None:
        old_meta = _load(self.path)[0]
        new_meta = _plain(dict(meta or {}))
        differ = sorted(k for k in new_meta if k in old_meta and old_meta[k] != new_meta[k])
        if differ and on_mismatch == "error":
            raise ValueError(
                f"records: {self.path} holds another run ({', '.join(differ)} differ); "
                "use another directory or on_mismatch='replace'"
            )
        if differ:
            self.clear()
        (self.path / "trials").mkdir(exist_ok=True)
        for stray in self.path.rglob(_TMP_PREFIX + "*"):  # left by a killed write
            stray.unlink()
        appended_files = [self.path / "events.jsonl"]
        for name in METRICS_NAMES:
            appended_files += self.path.glob(f"trials/*/{name}")
        for appended in appended_files:
            _repair_tail(appended)  # a row cut short by a kill is dropped
        self.meta, self._rows, self._fields, self._events = _load(self.path)
        # a trial goes on in the file it was recorded in, whatever this object's name
        self._names = {t: _metrics_file(self.path / "trials" / t).name for t in self._fields}
        self._seen = {t: {int(r["window"]) for r in rows} for t, rows in self._rows.items()}
        if meta:
            self.meta.update(_plain(dict(meta)))
            self.write_meta()
        self._event_set = set(self._events)
        if tensorboard:  # what is recorded and not yet in the log directory goes there
            self._tb = TensorBoardWriter(tensorboard)
            events = [json.loads(line) for line in self._events]
            self._tb.sync(self._rows, events, self._hparams(), resume=True)

    def _hparams(self) -> list[str]:
        names = self.meta.get("hparams")
        return list(names) if isinstance(names, (list, tuple)) else []

    def write_meta(self) -> None:
        """Write :attr:`meta` to ``run.json``."""
        write_atomic(self.path / "run.json", json.dumps(_plain(self.meta), indent=2) + "\n")

    def close(self) -> None:
        """Release the directory's lock (the records stay readable); TensorBoard files
        are flushed and closed."""
        if self._tb is not None:
            self._tb.close()
        self._lock.release()

    def __enter__(self) -> RunRecords:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clear(self) -> None:
        """Remove every record of this directory, ``tensorboard/`` included (other files
        are left alone, a log directory elsewhere too); the directory stays open,
        empty, with this object's ``meta``."""
        tb = self._tb
        if tb is not None:
            tb.close()
        shutil.rmtree(self.path / "trials", ignore_errors=True)
        shutil.rmtree(self.path / "tensorboard", ignore_errors=True)
        for name in (
            "run.json",
            "summary.json",
            "events.jsonl",
            "trials_summary.csv",
            "best_overall.json",
        ):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        if hasattr(self, "_rows"):  # an open writer starts afresh
            (self.path / "trials").mkdir(exist_ok=True)
            self._rows, self._fields, self._events, self._names = {}, {}, [], {}
            self._event_set, self._seen = set(), {}
            self.write_meta()
        if tb is not None:  # what is written from now on starts afresh
            self._tb = TensorBoardWriter(tb.logdir, tb.flush_secs)

    # -- metrics ------------------------------------------------------------------------

    def _trial_dir(self, trial: str) -> Path:
        if not isinstance(trial, str) or not _NAME.match(trial):
            raise ValueError(
                f"records: trial names are letters, digits, '_', '-', '.'; got {trial!r}"
            )
        d = self.path / "trials" / trial
        d.mkdir(exist_ok=True)
        return d

    def log(self, trial: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append ``rows`` (each with a ``window``) to ``trial``'s ``metrics.csv`` (the
        :attr:`metrics_name` of a new trial; a recorded one goes on in its own file).

        Rows whose window is already recorded are skipped; the columns are fixed by
        the first row ever written for the trial (a row with another column raises
        ``ValueError`` before anything is written). Returns how many rows were added.
        """
        d = self._trial_dir(trial)
        rows = [dict(r) for r in rows]
        for r in rows:
            if "window" not in r:
                raise ValueError(f"records: every row needs a 'window'; got keys {sorted(r)}")
        seen = self._seen.setdefault(trial, set())
        fields = self._fields.get(trial) or (list(rows[0]) if rows else [])
        new, batch = [], set()
        for r in rows:
            unknown = set(r) - set(fields)
            if unknown:
                raise ValueError(
                    f"records: trial {trial!r} has columns {fields}; unknown {sorted(unknown)}"
                )
            w = int(_plain(r["window"]))
            if w in seen or w in batch:
                continue
            batch.add(w)
            new.append({k: _plain(v) for k, v in r.items()})
        if not new:
            return 0
        text = _csv_text(fields, new)
        if trial not in self._fields:  # a new file appears whole, with its header
            write_atomic(d / self.metrics_name, text)
            self._names[trial] = self.metrics_name
        else:
            _append(d / self._names[trial], text[text.index("\n") + 1 :])
        seen.update(int(r["window"]) for r in new)
        self._rows.setdefault(trial, []).extend(new)
        self._fields[trial] = fields
        if self._tb is not None:
            self._tb.log(trial, new, self._hparams())
        return len(new)

    def last_window(self, trial: str) -> int:
        """The last recorded window of ``trial`` (-1 if none)."""
        return max((int(r["window"]) for r in self._rows.get(trial, [])), default=-1)

    def rows(self, trial: str) -> list[dict[str, Any]]:
        """``trial``'s rows as recorded (numbers parsed back)."""
        return [dict(r) for r in self._rows.get(trial, [])]

    def trials(self) -> list[str]:
        """Names of the trials that have metrics or a summary."""
        return sorted(p.name for p in (self.path / "trials").iterdir() if p.is_dir())

    # -- events ---------------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> bool:
        """Append an event to ``events.jsonl``; an identical event is recorded once."""
        line = _json({"kind": str(kind), **fields})
        if line in self._event_set:
            return False
        _append(self.path / "events.jsonl", line + "\n")
        self._events.append(line)
        self._event_set.add(line)
        if self._tb is not None:
            self._tb.event(json.loads(line), len(self._events) - 1)
        return True

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The recorded events, optionally of one kind."""
        out = [json.loads(line) for line in self._events]
        return [e for e in out if kind is None or e["kind"] == kind]

    # -- summaries ------------------------------------------------------------------------

    def finish_trial(self, trial: str, summary: Mapping[str, Any]) -> None:
        """Write ``trial``'s ``summary.json`` and refresh ``trials_summary.csv`` and
        ``best_overall.json``."""
        d = self._trial_dir(trial)
        summary = _plain(dict(summary))
        write_atomic(d / "summary.json", json.dumps(summary, indent=2, allow_nan=True) + "\n")
        summaries = self.summaries()
        flat = [{"trial": name, **_flatten(s)} for name, s in summaries.items()]
        fields: list[str] = []
        for row in flat:
            fields += [k for k in row if k not in fields]
        write_atomic(self.path / "trials_summary.csv", _csv_text(fields, flat))
        ranked = [
            (s[self.select], name)
            for name, s in summaries.items()
            if isinstance(s.get(self.select), (int, float)) and math.isfinite(s[self.select])
        ]
        if ranked:
            name = max(ranked)[1]
            self._write_best(name, summaries[name])

    def write_best(self, trial: str) -> None:
        """Make ``best_overall.json`` name the finished ``trial``: for a caller whose own
        rule chose the best (a population's best member, ties broken by its validation
        loss) rather than the highest ``select`` score (ties to the last name)."""
        summary = self.summaries().get(trial)
        if summary is None:
            raise ValueError(f"records: no finished trial {trial!r} in {self.path}")
        self._write_best(trial, summary)

    def _write_best(self, trial: str, summary: Mapping[str, Any]) -> None:
        best = {"trial": trial, **summary}
        write_atomic(self.path / "best_overall.json", json.dumps(best, indent=2) + "\n")

    def summaries(self) -> dict[str, dict[str, Any]]:
        """``{trial: summary}`` for every finished trial."""
        return _summaries(self.path)

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """Write the run's own ``summary.json``."""
        path = self.path / "summary.json"
        write_atomic(path, json.dumps(_plain(dict(summary)), indent=2) + "\n")
        return path


class DamagedRecordError(ValueError):
    """A record file that is not what it should be (invalid JSON, say)."""


def _json_file(f: Path) -> Any:
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedRecordError(
            f"records: {f} is damaged ({err}); move it away or use another directory"
        ) from None


def _summaries(path: Path) -> dict[str, dict[str, Any]]:
    """``{trial: summary}`` for every trial of ``path`` that has a ``summary.json``."""
    trials = path / "trials"
    out = {}
    for d in sorted(trials.iterdir()) if trials.is_dir() else []:
        summary = _json_file(d / "summary.json")
        if summary is not None:
            out[d.name] = summary
    return out


def _metrics_file(trial_dir: Path) -> Path | None:
    """The metrics file of a trial, the first of :data:`METRICS_NAMES` there."""
    return next((f for n in METRICS_NAMES if (f := trial_dir / n).exists()), None)


def _load(path: Path):
    """``(meta, rows, fields, event lines)`` of a run directory, as recorded."""
    meta = _json_file(path / "run.json") or {}
    rows: dict[str, list[dict[str, Any]]] = {}
    fields: dict[str, list[str]] = {}
    trials = path / "trials"
    for d in sorted(trials.iterdir()) if trials.is_dir() else []:
        metrics = _metrics_file(d)
        if metrics is not None:
            fields[d.name], rows[d.name] = _read_csv(metrics)
    events = path / "events.jsonl"
    lines = _whole_lines(events.read_text()).splitlines() if events.exists() else []
    for number, line in enumerate(lines, 1):
        try:
            if line.strip():
                json.loads(line)
        except ValueError as err:
            raise DamagedRecordError(
                f"records: {events} line {number} is damaged ({err}); move the file away "
                "or use another directory"
            ) from None
    return meta, rows, fields, [ln for ln in lines if ln.strip()]


def read_run(path: str | os.PathLike) -> dict[str, Any]:
    """Everything in a run directory, read only: ``meta``, ``summary``, ``rows`` per
    trial, ``events``, ``summaries`` per trial and ``best`` (``None`` where absent)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"read_run: {path} is not a run directory")
    meta, rows, _, events = _load(path)

    return {
        "meta": meta,
        "summary": _json_file(path / "summary.json"),
        "rows": rows,
        "events": [json.loads(line) for line in events],
        "summaries": _summaries(path),
        "best": _json_file(path / "best_overall.json"),
    }
