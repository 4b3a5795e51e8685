"""Checkpoints on orbax: keep the best plus the last k, a manifest, atomic writes.

Each checkpoint is an orbax directory ``window_00000012`` holding any pytree
(weights, optimizer state with its hyperparameters, tuner state). It is written
under a temporary name and renamed when complete, and ``manifest.json`` (windows,
scores, which one is best) is replaced atomically after it, so a run killed at
any moment leaves the manifest pointing only at finished checkpoints. Each checkpoint
also carries its own manifest entry, so a lost or damaged manifest is rebuilt from the
checkpoints on disk (with a warning) instead of starting over. Each entry also holds a
CRC-32 of every array's bytes (one more host copy of the state per save), so damaged
data is caught, not only a damaged structure.
Restoring tries the requested checkpoint and, if it is truncated or corrupt, falls back
to the next good one (the newest; for ``"best"``, the best score first) with a warning,
and sets the damaged one aside (renamed ``.damaged_window_...``, out of the manifest),
so it is neither tried again nor counted among the last ``keep_last``. Retention never
deletes the best checkpoint.

One checkpoint can also hold a population split over several processes (``shared=True``,
as ``hj.Loop(..., mesh=...)`` over several processes makes it): every process calls
every method in the same order, orbax writes each process's shards into the same
directory (which all processes must see: one machine's disk, NFS, a bucket), and
process 0 alone holds the lock, renames, prunes and writes the manifest, with a
barrier after each step that the others rely on.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding as NS

from ...core.sharding import is_key
from ..records import write_atomic

__all__ = ["Checkpoints"]

_MANIFEST = "manifest.json"
_ENTRY = "hagfish_entry.json"  # beside orbax's files: what the manifest says of it


def _valid(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("window"), int)
        and (entry.get("score") is None or isinstance(entry["score"], (int, float)))
    )


def _plain(tree: Any) -> Any:
    """PRNG key arrays as their raw ``uint32`` data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def _typed(tree: Any, like: Any) -> Any:
    """Undo :func:`_plain` where ``like`` holds a key array, and hand back fresh arrays.

    orbax restores arrays committed to a device; a jitted function compiled for the
    uncommitted arrays a run makes would compile again for them, so a resumed run
    would pay its compile twice. Host copies put back on the default device are
    uncommitted, like the originals. Arrays laid out on a mesh (``like``'s are) come
    back laid out the same, and stay as orbax restored them.
    """

    def back(x, ref):
        fresh = x
        if isinstance(x, jax.Array) and not isinstance(getattr(ref, "sharding", None), NS):
            fresh = jnp.asarray(np.asarray(x))
        return (
            jax.random.wrap_key_data(fresh, impl=jax.random.key_impl(ref)) if is_key(ref) else fresh
        )

    return jax.tree.map(back, tree, like)


def _checksum(tree: Any) -> str:
    """CRC-32 of every leaf's dtype, shape and bytes, in tree order (host copies)."""
    crc = 0
    for x in jax.tree.leaves(jax.device_get(tree)):
        a = np.ascontiguousarray(np.asarray(x))
        crc = zlib.crc32(f"{a.dtype.str}{a.shape}".encode(), crc)
        crc = zlib.crc32(a.reshape(-1).view(np.uint8), crc)
    return f"{crc:08x}"


def _write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1))


class Checkpoints:
    """A directory of orbax checkpoints with a manifest.

    Args:
      directory: where checkpoints live (created if missing).
      keep_last: how many most recent checkpoints to keep besides the best (>= 1).
      shared: every process of a ``jax.distributed`` run writes this directory
        together (see the module's docstring); ``False``: this process alone.

    >>> import tempfile, jax.numpy as jnp
    >>> from hagfish_jax.shell.loop import Checkpoints
    >>> ckpt = Checkpoints(tempfile.mkdtemp(), keep_last=1)
    >>> ckpt.save(3, {"w": jnp.ones(2)}, score=0.9)
    >>> state, entry = ckpt.restore({"w": jnp.zeros(2)})
    >>> entry["window"], state["w"].tolist()
    (3, [1.0, 1.0])
    """

    def __init__(self, directory: str | os.PathLike, keep_last: int = 2, *, shared: bool = False):
        if isinstance(keep_last, bool) or int(keep_last) != keep_last or keep_last < 1:
            raise ValueError(f"Checkpoints: keep_last must be an integer >= 1, got {keep_last!r}")
        import orbax.checkpoint as ocp

        from ..lock import DirectoryLock

        self.shared = bool(shared) and jax.process_count() > 1
        self._lead = not self.shared or jax.process_index() == 0  # writes the manifest
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = None
        if self._lead:
            self._lock = DirectoryLock(self.directory, "checkpoint directory").acquire()
        self.keep_last = int(keep_last)
        self._checkpointer = ocp.StandardCheckpointer()
        self.entries = self._read_manifest()
        self._sync("opened")  # process 0 has rebuilt a damaged manifest

    def close(self) -> None:
        """Release the directory's lock (held from construction on)."""
        if self._lock is not None:
            self._lock.release()

    def _sync(self, step: str) -> None:
        """With ``shared``: wait until every process got here."""
        if self.shared:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"hagfish checkpoints: {step}")

    def _read_manifest(self) -> list[dict[str, Any]]:
        """The manifest's entries; a missing, garbled or malformed manifest is rebuilt
        from the checkpoints themselves (each carries its entry), with one warning."""
        manifest = self.directory / _MANIFEST
        problem = None
        try:
            entries = json.loads(manifest.read_text())["entries"]
            if not isinstance(entries, list) or not all(_valid(e) for e in entries):
                raise ValueError("malformed entries")
        except FileNotFoundError:
            entries, problem = [], "missing"
        except (ValueError, KeyError, TypeError) as err:
            entries, problem = [], f"unreadable: {err}"
        found = {e["window"]: e for e in self._scan()}
        entries = [e for e in entries if (self.directory / e["name"]).is_dir()]
        if problem is not None and found and self._lead:
            warnings.warn(
                f"Checkpoints: manifest {problem}; rebuilt from {len(found)} checkpoint(s) "
                f"in {self.directory}",
                stacklevel=3,
            )
            entries = sorted(found.values(), key=lambda e: e["window"])
            _write_json_atomic(manifest, {"entries": entries})
        elif problem is not None and found:
            entries = sorted(found.values(), key=lambda e: e["window"])
        return entries

    def _scan(self) -> list[dict[str, Any]]:
        """The entries written inside each finished ``window_*`` directory."""
        out = []
        for d in sorted(self.directory.glob("window_*")):
            try:
                entry = json.loads((d / _ENTRY).read_text())
            except (OSError, ValueError):
                continue
            if _valid(entry) and entry["name"] == d.name:
                out.append(entry)
        return out

    # -- queries -------------------------------------------------------------------------
    @property
    def best(self) -> dict[str, Any] | None:
        """The entry with the highest finite score (ties: the earliest)."""
        scored = [e for e in self.entries if e["score"] is not None]
        return max(scored, key=lambda e: (e["score"], -e["window"]), default=None)

    @property
    def latest(self) -> dict[str, Any] | None:
        return max(self.entries, key=lambda e: e["window"], default=None)

    # -- writing -------------------------------------------------------------------------
    def save(self, window: int, state: Any, score: float | None = None, **meta: Any) -> None:
        """Write ``state`` as the checkpoint of ``window``, then update the manifest."""
        name = f"window_{int(window):08d}"
        final = self.directory / name
        tmp = self.directory / f".tmp_{name}"
        if self._lead:
            shutil.rmtree(tmp, ignore_errors=True)
        self._sync("cleared")
        self._checkpointer.save(tmp.resolve(), _plain(state))  # every process: its shards
        self._checkpointer.wait_until_finished()
        self._sync("written")
        score = None if score is None or not math.isfinite(float(score)) else float(score)
        old = next((e for e in self.entries if e["window"] == int(window)), None)
        if score is None and old is not None and old["score"] is not None:
            score = old["score"]  # a later unscored save never demotes a scored window
        entry = {"window": int(window), "name": name, "score": score, **meta}
        if not self.shared:  # (a process of a shared one holds only its own shards)
            entry["checksum"] = _checksum(_plain(state))
        if self._lead:
            (tmp / _ENTRY).write_text(json.dumps(entry))  # travels with the checkpoint
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        self.entries = [e for e in self.entries if e["window"] != int(window)]
        self.entries.append(entry)
        self.entries.sort(key=lambda e: e["window"])
        self._retain()
        if self._lead:
            _write_json_atomic(self.directory / _MANIFEST, {"entries": self.entries})
        self._sync("saved")

    def _retain(self) -> None:
        best = self.best
        recent = self.entries[-self.keep_last :]
        keep = {e["window"] for e in recent} | ({best["window"]} if best else set())
        for e in self.entries:
            if e["window"] not in keep and self._lead:
                shutil.rmtree(self.directory / e["name"], ignore_errors=True)
        self.entries = [e for e in self.entries if e["window"] in keep]

    # -- reading -------------------------------------------------------------------------
    def restore(
        self,
        like: Any,
        which: str | int = "best",
        *,
        like_for: Callable[[dict[str, Any]], Any] | None = None,
    ) -> tuple[Any, dict[str, Any]] | None:
        """Restore into the structure of ``like``: ``"best"``, ``"latest"`` or a window.

        Falls back to the other checkpoints when the requested one cannot be read or
        its data fails its checksum: for ``"best"`` the best score first, otherwise the
        newest first. A damaged checkpoint is set aside (``.damaged_<name>``) and leaves
        the manifest. ``like_for(entry)``: the structure of that entry's checkpoint, when
        it depends on the entry (default ``like`` for all). Returns ``(state, entry)``,
        or ``None`` when no checkpoint can be read.
        """
        like_for = like_for or (lambda entry: like)
        if which == "best":
            first = self.best or self.latest
        elif which == "latest":
            first = self.latest
        else:
            first = next((e for e in self.entries if e["window"] == int(which)), None)
            if first is None:
                raise KeyError(f"Checkpoints.restore: no checkpoint for window {which!r}")
        if which == "best":
            order = lambda e: (e["score"] is not None, e["score"] or 0.0, e["window"])  # noqa: E731
        else:  # resuming: lose as little work as possible
            order = lambda e: e["window"]  # noqa: E731
        rest = sorted((e for e in self.entries if e is not first), key=order, reverse=True)
        for entry in ([first] if first else []) + rest:
            shape = like_for(entry)
            try:
                path = (self.directory / entry["name"]).resolve()
                state, problem = self._checkpointer.restore(path, _plain(shape)), None
                if "checksum" in entry and _checksum(state) != entry["checksum"]:
                    problem = "its data does not match its checksum"
            except Exception as err:  # noqa: BLE001 - any read failure means "skip it"
                problem = type(err).__name__
            if self.shared:  # every process reads its own shards: all of them, or none
                problem = _first_problem(problem)
            if problem is None:
                return _typed(state, shape), entry
            warnings.warn(
                f"Checkpoints: {entry['name']} could not be read ({problem}); set aside "
                "as .damaged_" + entry["name"] + ", trying the previous good one",
                stacklevel=2,
            )
            self._set_aside(entry)
        return None

    def _set_aside(self, entry: dict[str, Any]) -> None:
        """Take a damaged checkpoint out of the manifest and out of the way."""
        self.entries = [e for e in self.entries if e["window"] != entry["window"]]
        if self._lead:
            damaged = self.directory / f".damaged_{entry['name']}"
            shutil.rmtree(damaged, ignore_errors=True)
            try:
                os.replace(self.directory / entry["name"], damaged)
            except OSError:  # already gone: the manifest alone forgets it
                pass
            _write_json_atomic(self.directory / _MANIFEST, {"entries": self.entries})
        self._sync("set aside")


def _first_problem(problem: str | None) -> str | None:
    """``problem`` of the first process that had one (on every process), or ``None``."""
    from jax.experimental import multihost_utils

    failed = multihost_utils.process_allgather(np.int32(problem is not None))
    first = np.flatnonzero(np.asarray(failed))
    if first.size == 0:
        return None
    return problem or f"failed on process {int(first[0])}"
