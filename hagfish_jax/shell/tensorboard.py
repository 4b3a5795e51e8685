"""Run records mirrored into TensorBoard event files (the ``tensorboard`` extra).

:class:`TensorBoardWriter` turns what :class:`~hagfish_jax.shell.records.RunRecords`
records into TensorBoard scalars and text, one TensorBoard run (a subdirectory of
the log directory) per trial or member, so TensorBoard overlays them::

    LOGDIR/<trial>/events.out.tfevents.*   one run per trial (member_03, run_00, ...)
    LOGDIR/_events/events.out.tfevents.*   events that belong to no single trial

Each metric row becomes scalars at ``step = window``: the columns named in the run's
``"hparams"`` as ``hparams/<name>`` (the hyperparameter trajectories), every other
numeric column as ``metrics/<name>`` (text columns are left out). Each event becomes
a text entry ``events/<kind>`` at its window (its place in ``events.jsonl`` when it
has none) in the run it belongs to: the event's ``trial`` (with its ``member``: the
trial ``<trial>_<member>``); else its ``member``'s trial, ``<prefix>_<member>``
(``member_03`` in ``hagfish demo``) when exactly one trial has that number; else
the only trial when there is one; else ``_events``. A PBT exploit is also the
scalar ``pbt/parent`` (the parent's index) in the exploited member's run. The
hyperparameter trajectories come from the rows (the values each window trained with;
the Loop's :class:`~hagfish_jax.shell.loop.RecordRun` writes them); an ``"hparams"``
event (a change and its source) is text.

Event files are written by tensorboardX, without its thread per run: points go to
the file as they are recorded, and one background thread flushes the files every
``flush_secs`` (default 1 s), so TensorBoard shows a running job's points within
about a second; :meth:`TensorBoardWriter.close` flushes everything. A writer never
writes a window twice; opened on a log directory that already has a run's files
(a resumed job), it reads them, leaves the windows and events found there alone and
writes the rest (those a killed job recorded but never flushed included).

>>> import tempfile, hagfish_jax as hj
>>> run_dir = tempfile.mkdtemp()
>>> with hj.records.RunRecords(run_dir, {"hparams": ["learning_rate"]}, tensorboard=True) as rec:
...     rec.log("member_00", [{"window": 0, "val_accuracy": 0.5, "learning_rate": 0.01}])
1
>>> sorted(p.name for p in (rec.path / "tensorboard").iterdir())
['member_00']
"""

from __future__ import annotations

import json
import numbers
import os
import re
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._files import _NAME, _json

__all__ = ["EVENTS_RUN", "INSTALL", "TensorBoardWriter", "to_tensorboard"]

#: How to install what TensorBoard output needs.
INSTALL = 'pip install "hagfish-jax[tensorboard]"'

#: The run of the events that belong to no single trial (no trial can be named so).
EVENTS_RUN = "_events"

_MEMBER = re.compile(r"^(.+)_(\d+)$")


def _tensorboardx():
    """tensorboardX's event writer and protocol buffers, or an ImportError that says
    how to install them."""
    try:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2
        from tensorboardX.summary import text
    except ImportError as err:
        raise ImportError(f"TensorBoard output needs tensorboardX: {INSTALL}") from err
    return EventsWriter, event_pb2, summary_pb2, text


def _number(v: Any) -> float | None:
    if isinstance(v, numbers.Real):  # bools and NaN included
        return float(v)
    return None


def _step(v: Any) -> int | None:
    number = _number(v)
    return int(number) if number is not None and number == number and number % 1 == 0 else None


def _markdown(event: Mapping[str, Any]) -> str:
    lines = [f"**{event.get('kind', '?')}**"]
    for k, v in event.items():
        if k != "kind":
            lines.append(f"- {k}: {v if isinstance(v, str) else json.dumps(v, allow_nan=True)}")
    return "\n".join(lines)


class TensorBoardWriter:
    """Writes run records as TensorBoard event files in ``logdir`` (see the module).

    Args:
      logdir: the log directory (created if missing); point ``tensorboard --logdir``
        at it.
      flush_secs: the most seconds a written point waits before it is flushed to
        the file (a background thread flushes; :meth:`close` flushes everything).

    Raises:
      ImportError: tensorboardX is not installed (the message says how to).
      NotADirectoryError: ``logdir`` is a file.
      ValueError: ``flush_secs`` is not positive.

    >>> import tempfile
    >>> with TensorBoardWriter(tempfile.mkdtemp()) as tb:
    ...     tb.log("run", [{"window": 0, "score": 0.5, "learning_rate": 0.1}], ["learning_rate"])
    ...     tb.event({"kind": "rollback", "window": 0, "to_window": 0}, index=0)
    1
    True
    """

    def __init__(self, logdir: str | os.PathLike, flush_secs: float = 1.0) -> None:
        self._api = _tensorboardx()
        if not flush_secs > 0:
            raise ValueError(f"TensorBoardWriter: flush_secs must be > 0, got {flush_secs!r}")
        self.logdir = Path(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise NotADirectoryError(f"TensorBoardWriter: {self.logdir} is a file")
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.flush_secs = float(flush_secs)
        #: runs that had event files when this writer opened (an earlier job's)
        self.existing = {p.parent.name for p in self.logdir.glob("*/*tfevents*")}
        self._files: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._windows: dict[str, set[int]] = {}
        self._events: set[str] = set()
        self._trials: set[str] = set()
        self._texts: dict[tuple[str, str], tuple[int, str]] = {}
        self._stamp = 0

    # -- what records call -----------------------------------------------------------------

    def log(
        self, trial: str, rows: Iterable[Mapping[str, Any]], hparams: Sequence[str] = ()
    ) -> int:
        """Write ``trial``'s rows (each with a ``window``) whose window it has not written;
        ``hparams``: the columns that are hyperparameters. Returns how many it wrote."""
        return self._log(trial, rows, set(hparams), None)

    def event(self, event: Mapping[str, Any], index: int) -> bool:
        """Write ``event`` (a ``kind`` and its fields), unless already written; ``index``:
        its place in ``events.jsonl`` (the step of an event without a window)."""
        return self._event(dict(event), int(index), None)

    def sync(
        self,
        rows: Mapping[str, Iterable[Mapping[str, Any]]],
        events: Sequence[Mapping[str, Any]],
        hparams: Sequence[str] = (),
        *,
        resume: bool = False,
    ) -> int:
        """Write whatever of a run's records is not written yet: ``rows`` by trial and
        ``events`` in their order in ``events.jsonl`` (as :func:`read_run` gives them).

        With ``resume``, the event files already in the log directory (an earlier job's)
        are read first: the rows and events found there are marked, not written again;
        the others (a killed job's last points, never flushed) are written. The files
        are flushed before it returns. Returns how many rows and events were written.
        """
        self._trials.update(rows)
        names = set(hparams)
        found = self._read_existing() if resume else None
        n = sum(self._log(t, r, names, found) for t, r in rows.items())
        n += sum(self._event(dict(e), i, found) for i, e in enumerate(events))
        self.flush()
        return n

    def flush(self) -> None:
        """Flush every file written since the last flush."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            for run in dirty:
                self._files[run].flush()

    def close(self) -> None:
        """Flush and close every file; a later write opens new ones."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self.flush()
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files = {}
        self._stop.clear()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- rows and events -------------------------------------------------------------------

    def _log(self, trial: str, rows, hparams: set[str], found: _Found | None) -> int:
        seen = self._windows.setdefault(trial, set())
        self._trials.add(trial)
        present = found.windows.get(trial, set()) if found is not None else set()
        written = 0
        for row in rows:
            window = int(row["window"])
            if window in seen:
                continue
            seen.add(window)
            if window in present:  # an earlier job wrote it
                continue
            values = []
            for column, v in row.items():
                number = _number(v)
                if column != "window" and number is not None:
                    group = "hparams" if column in hparams else "metrics"
                    values.append((f"{group}/{column}", number))
            self._write(trial, window, values)
            written += 1
        return written

    def _event(self, event: dict[str, Any], index: int, found: _Found | None) -> bool:
        key = _json(event)
        if key in self._events:
            return False
        self._events.add(key)
        window = _step(event.get("window"))
        step = window if window is not None else index
        kind = str(event.get("kind", "event"))
        body = _markdown(event)
        if found is not None and found.has_text(f"events/{kind}", step, body):
            return False  # an earlier job wrote it (in whichever run was its home then)
        home = self._home(event)
        values = []
        if kind == "exploit" and _number(event.get("parent")) is not None:
            values.append(("pbt/parent", _number(event["parent"])))
        self._write(home, step, values, (f"events/{kind}", body))
        return True

    def _member_run(self, member: int, trial: Any = None) -> str | None:
        """The trial of a population's ``member``: ``<trial>_<member>`` when the event
        names its trial, else the only recorded trial ``<prefix>_<member>``."""
        if isinstance(trial, str) and _NAME.match(trial):
            return f"{trial}_{member:02d}"
        hits = [t for t in self._trials if (m := _MEMBER.match(t)) and int(m[2]) == member]
        return hits[0] if len(hits) == 1 else None

    def _home(self, event: Mapping[str, Any]) -> str:
        trial, member = event.get("trial"), event.get("member")
        member = member if isinstance(member, int) and not isinstance(member, bool) else None
        if member is not None:
            return self._member_run(member, trial) or EVENTS_RUN
        if isinstance(trial, str) and _NAME.match(trial):
            return trial
        return next(iter(self._trials)) if len(self._trials) == 1 else EVENTS_RUN

    # -- files -------------------------------------------------------------------------------

    def _read_existing(self) -> _Found:
        """What the event files of the log directory hold (this writer's flushed first)."""
        self.flush()
        _, event_pb2, _, _ = self._api
        found = _Found()
        for path in sorted(self.logdir.glob("*/*tfevents*")):  # in the order written
            run = path.parent.name
            for event in _records(path, event_pb2):
                for v in event.summary.value:
                    if v.tag.startswith(("metrics/", "hparams/")):
                        found.windows.setdefault(run, set()).add(int(event.step))
                    elif v.tag.endswith(_TEXT) and v.HasField("tensor") and v.tensor.string_val:
                        tag = v.tag[: -len(_TEXT)]
                        body = v.tensor.string_val[0].decode("utf-8", "replace")
                        found.texts.setdefault((tag, int(event.step)), []).append(body)
                        # a later event of this kind at this step joins this entry
                        self._texts[(run, tag)] = (int(event.step), body)
        return found

    def _write(self, run: str, step: int, values: list, text: tuple[str, str] | None = None):
        _, event_pb2, summary_pb2, text_summary = self._api
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values]
        )
        if text is not None:
            tag, body = text
            last = self._texts.get((run, tag))
            if last is not None and last[0] == step:  # the same kind again at this step:
                body = last[1] + "\n\n" + body  # one entry holds both (the later wins)
            self._texts[(run, tag)] = (step, body)
            summary.value.extend(text_summary(tag, body).value)
        if not summary.value:
            return
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        with self._lock:
            self._file(run).write_event(event)
            self._dirty.add(run)
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
            self._flusher.start()

    def _file(self, run: str):
        f = self._files.get(run)
        if f is None:
            directory = self.logdir / run
            directory.mkdir(parents=True, exist_ok=True)
            # names sort in the order the files were opened (TensorBoard reads them so),
            # and two writers opened in the same second never share a name
            self._stamp = max(time.time_ns(), self._stamp + 1)
            events_writer = self._api[0]
            f = self._files[run] = events_writer(str(directory / "events"), f".{self._stamp}")
        return f

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_secs):
            self.flush()


#: what tensorboardX adds to the tag of a text entry
_TEXT = "/text_summary"


class _Found:
    """The rows (windows by run) and the text entries (bodies by tag and step) that
    event files already hold."""

    def __init__(self) -> None:
        self.windows: dict[str, set[int]] = {}
        self.texts: dict[tuple[str, int], list[str]] = {}

    def has_text(self, tag: str, step: int, body: str) -> bool:
        """Whether an entry ``tag`` at ``step`` holds ``body`` (alone, or joined with
        others of its kind at that step)."""
        part = "\n\n" + body + "\n\n"
        return any(part in "\n\n" + t + "\n\n" for t in self.texts.get((tag, step), ()))


def _records(path: Path, event_pb2) -> list:
    """The whole records of an event file, in order; a record cut short or damaged (a
    job killed while writing) ends the file."""
    from tensorboardX.record_writer import masked_crc32c  # the checksum the writer uses

    data, pos, out = path.read_bytes(), 0, []
    while pos + 12 <= len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        if pos + 16 + length > len(data):
            break
        body = data[pos + 12 : pos + 12 + length]
        (head_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        if head_crc != masked_crc32c(header) or body_crc != masked_crc32c(body):
            break  # damaged: what follows cannot be trusted
        try:
            out.append(event_pb2.Event.FromString(body))
        except Exception:  # not a record: what follows cannot be trusted
            break
        pos += 16 + length
    return out


def to_tensorboard(
    run_dir: str | os.PathLike, logdir: str | os.PathLike | None = None
) -> Path:
    """Write an existing run directory's records as TensorBoard event files.

    Args:
      run_dir: a run directory (see :mod:`hagfish_jax.shell.records`); only read.
      logdir: where the event files go (default ``run_dir/tensorboard``). What the
        event files there already hold is left as it is, so exporting again adds
        only what was recorded since.

    Returns:
      The log directory.

    Raises:
      ImportError: tensorboardX is not installed (the message says how to).
      FileNotFoundError: ``run_dir`` is not a run directory.
    """
    from .records import read_run

    _tensorboardx()
    run = read_run(run_dir)
    logdir = Path(run_dir) / "tensorboard" if logdir is None else Path(logdir)
    with TensorBoardWriter(logdir) as writer:
        writer.sync(run["rows"], run["events"], run["meta"].get("hparams") or (), resume=True)
    return logdir
