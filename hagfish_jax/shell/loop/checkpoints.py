"""Checkpoints on orbax: keep the best plus the last k, a manifest, atomic writes.

Each checkpoint is an orbax directory ``window_00000012`` holding any pytree
(weights, optimizer state with its hyperparameters, tuner state). It is written
under a temporary name and renamed when complete, and ``manifest.json`` (windows,
scores, which one is best) is replaced atomically after it, so a run killed at
any moment leaves the manifest pointing only at finished checkpoints. Restoring
tries the requested checkpoint and, if it is truncated or corrupt, falls back to
the next good one (best score first) with a warning. Retention never deletes the
best checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax

from ..records import write_atomic

__all__ = ["Checkpoints"]

_MANIFEST = "manifest.json"


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _plain(tree: Any) -> Any:
    """PRNG key arrays as their raw ``uint32`` data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _typed(tree: Any, like: Any) -> Any:
    """Undo :func:`_plain` where ``like`` holds a key array."""

    def back(x, ref):
        return jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x

    return jax.tree.map(back, tree, like)


def _write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1))


class Checkpoints:
    """A directory of orbax checkpoints with a manifest.

    Args:
      directory: where checkpoints live (created if missing).
      keep_last: how many most recent checkpoints to keep besides the best (>= 1).

    >>> import tempfile, jax.numpy as jnp
    >>> from hagfish_jax.shell.loop import Checkpoints
    >>> ckpt = Checkpoints(tempfile.mkdtemp(), keep_last=1)
    >>> ckpt.save(3, {"w": jnp.ones(2)}, score=0.9)
    >>> state, entry = ckpt.restore({"w": jnp.zeros(2)})
    >>> entry["window"], state["w"].tolist()
    (3, [1.0, 1.0])
    """

    def __init__(self, directory: str | os.PathLike, keep_last: int = 2):
        if isinstance(keep_last, bool) or int(keep_last) != keep_last or keep_last < 1:
            raise ValueError(f"Checkpoints: keep_last must be an integer >= 1, got {keep_last!r}")
        import orbax.checkpoint as ocp

        from ..lock import DirectoryLock

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = DirectoryLock(self.directory, "checkpoint directory").acquire()
        self.keep_last = int(keep_last)
        self._checkpointer = ocp.StandardCheckpointer()
        self.entries: list[dict[str, Any]] = []
        manifest = self.directory / _MANIFEST
        if manifest.exists():
            try:
                self.entries = json.loads(manifest.read_text())["entries"]
            except (ValueError, KeyError) as err:
                warnings.warn(
                    f"Checkpoints: unreadable manifest ({err}); starting empty", stacklevel=2
                )
        self.entries = [e for e in self.entries if (self.directory / e["name"]).is_dir()]

    def close(self) -> None:
        """Release the directory's lock (held from construction on)."""
        self._lock.release()

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
        shutil.rmtree(tmp, ignore_errors=True)
        self._checkpointer.save(tmp.resolve(), _plain(state))
        self._checkpointer.wait_until_finished()
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        score = None if score is None or not math.isfinite(float(score)) else float(score)
        old = next((e for e in self.entries if e["window"] == int(window)), None)
        if score is None and old is not None and old["score"] is not None:
            score = old["score"]  # a later unscored save never demotes a scored window
        self.entries = [e for e in self.entries if e["window"] != int(window)]
        self.entries.append({"window": int(window), "name": name, "score": score, **meta})
        self.entries.sort(key=lambda e: e["window"])
        self._retain()
        _write_json_atomic(self.directory / _MANIFEST, {"entries": self.entries})

    def _retain(self) -> None:
        best = self.best
        recent = self.entries[-self.keep_last :]
        keep = {e["window"] for e in recent} | ({best["window"]} if best else set())
        for e in self.entries:
            if e["window"] not in keep:
                shutil.rmtree(self.directory / e["name"], ignore_errors=True)
        self.entries = [e for e in self.entries if e["window"] in keep]

    # -- reading -------------------------------------------------------------------------
    def restore(self, like: Any, which: str | int = "best") -> tuple[Any, dict[str, Any]] | None:
        """Restore into the structure of ``like``: ``"best"``, ``"latest"`` or a window.

        Falls back to the other checkpoints (best score first, then newest) when the
        requested one cannot be read. Returns ``(state, entry)``, or ``None`` when
        no checkpoint can be read.
        """
        if which == "best":
            first = self.best or self.latest
        elif which == "latest":
            first = self.latest
        else:
            first = next((e for e in self.entries if e["window"] == int(which)), None)
            if first is None:
                raise KeyError(f"Checkpoints.restore: no checkpoint for window {which!r}")
        rest = sorted(
            (e for e in self.entries if e is not first),
            key=lambda e: (e["score"] is not None, e["score"] or 0.0, e["window"]),
            reverse=True,
        )
        for entry in ([first] if first else []) + rest:
            try:
                path = (self.directory / entry["name"]).resolve()
                state = self._checkpointer.restore(path, _plain(like))
                return _typed(state, like), entry
            except Exception as err:  # noqa: BLE001 - any read failure means "skip it"
                warnings.warn(
                    f"Checkpoints: {entry['name']} could not be read ({type(err).__name__}); "
                    "trying the previous good one",
                    stacklevel=2,
                )
        return None
