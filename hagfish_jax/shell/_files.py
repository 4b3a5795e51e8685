"""Files that survive a kill: atomic whole-file writes, durable appends with a repair
of a cut-short last line, and the CSV/JSON conversions the run records use."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_atomic"]

_TMP_PREFIX = ".tmp-"
#: what a trial (a member, a run) may be called: it names a folder
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX + path.name + ".")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _append(path: Path, text: str) -> None:
    """Append ``text`` (whole lines) and make it durable before returning."""
    with open(path, "a", newline="", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _repair_tail(path: Path) -> None:
    """Drop a last line without its newline: what a process killed during an append
    leaves. Whole lines (every row that was reported written) are kept."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return
        pos = end
        while pos > 0:  # back to the last newline, a block at a time
            step = min(4096, pos)
            f.seek(pos - step)
            block = f.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                f.truncate(pos - step + cut + 1)
                return
            pos -= step
        f.truncate(0)


def _whole_lines(text: str) -> str:
    """``text`` up to its last newline (a reader ignores a half-written last line)."""
    return text[: text.rfind("\n") + 1]


def _plain(value: Any) -> Any:
    """A JSON/CSV-friendly Python value (numpy and jax scalars become numbers)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _json(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, allow_nan=True)


def _parse(text: str) -> Any:
    """A CSV cell back to a number where it is one (``nan``/``inf`` included)."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number == int(number) and re.fullmatch(r"-?\d+", text):
        return int(number)
    return number


def _csv_text(fieldnames: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _plain(v) for k, v in row.items()})
    return buf.getvalue()


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    text = _whole_lines(path.read_text(encoding="utf-8"))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [{k: _parse(v) for k, v in row.items()} for row in reader]
    return list(reader.fieldnames or []), rows


def _flatten(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in summary.items():
        v = _plain(v)
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[prefix + k] = json.dumps(v)
        else:
            out[prefix + k] = v
    return out
