"""An exclusive lock on a directory for the life of a run.

Two processes writing one run directory (or one Loop's checkpoint directory) would mix
their data. :class:`DirectoryLock` takes ``fcntl.flock`` on ``DIR/.lock`` and writes its
holder there (pid, host, start time), so a second writer is refused with a message
naming the holder. The kernel drops the lock when its process dies, however it dies
(``kill -9`` included): a lock file left by a dead process is stale and is simply taken
over. Inside one process the lock is shared: opening the same directory twice (a
writer and a reader of one run) is allowed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
from pathlib import Path

__all__ = ["DirectoryLock", "LockedError"]

_HELD: dict[str, list] = {}  # realpath -> [fd, users]
_GUARD = threading.Lock()


class LockedError(RuntimeError):
    """The directory is locked by another process."""


class DirectoryLock:
    """``DirectoryLock(path, what).acquire()`` ... ``release()``; also a context manager.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with DirectoryLock(d, "run directory") as lock:
    ...     lock.holder()["pid"] == os.getpid()
    True
    """

    def __init__(self, path: str | os.PathLike, what: str = "directory"):
        self.path = Path(path)
        self.what = what
        self.file = self.path / ".lock"
        self._held = False

    def holder(self) -> dict:
        """Who holds (or last held) the lock, as written in the lock file."""
        try:
            return json.loads(self.file.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> DirectoryLock:
        import fcntl

        if self._held:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        with _GUARD:
            if key in _HELD:  # this process holds it already: share
                _HELD[key][1] += 1
                self._held = True
                return self
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                h = self.holder()
                raise LockedError(
                    f"{self.what} {self.path} is in use by pid {h.get('pid', '?')} on "
                    f"{h.get('host', '?')} since {h.get('since', '?')}; wait for it to end "
                    "or use another directory"
                ) from None
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.datetime.now().isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
            _HELD[key] = [fd, 1]
        self._held = True
        return self

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        key = os.path.realpath(self.path)
        with _GUARD:
            entry = _HELD.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[key]
                with contextlib.suppress(OSError):
                    os.close(entry[0])  # closing the descriptor drops the flock

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        try:  # at interpreter exit module globals may already be gone
            self.release()
        except Exception:  # noqa: BLE001
            pass
