"""A persistent XLA compilation cache, and a count of what was really compiled.

On a CPU, compiling a population program takes seconds while a window of training
takes milliseconds, so a second run of the same program should not compile it again.
:func:`enable` points JAX's persistent compilation cache at a directory and caches
every program, however quick to compile; the next process that builds the same
programs loads them from there. ``hagfish demo`` enables it by default (in
:func:`default_dir`; ``--no-compile-cache`` turns it off); library users call
``hj.enable_compilation_cache()`` once, before their first jitted call.

:func:`stats` counts, from JAX's own monitoring events, how many XLA compilations
were requested in this process and how many of them the cache served.

>>> import tempfile, jax, jax.numpy as jnp
>>> path = enable(tempfile.mkdtemp())
>>> before = stats()
>>> _ = jax.jit(lambda x: x * 3 + 1)(jnp.arange(3.0))
>>> after = stats()
>>> after.requested - before.requested >= 1
True
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax

__all__ = ["CompileStats", "default_dir", "enable", "stats"]

_REQUESTED = "/jax/core/compile/backend_compile_duration"  # every XLA compile request
_HIT = "/jax/compilation_cache/cache_hits"  # served from the persistent cache
_counts = {"requested": 0, "hits": 0}
_listening = False


@dataclasses.dataclass(frozen=True)
class CompileStats:
    """XLA compilations requested in this process, and how many the cache served.

    Attributes:
      requested: programs JAX asked XLA for (one per new jitted shape or function).
      from_cache: of those, loaded from the persistent cache instead of compiled.
    """

    requested: int
    from_cache: int

    @property
    def compiled(self) -> int:
        """Programs XLA actually compiled."""
        return self.requested - self.from_cache

    def __sub__(self, other: CompileStats) -> CompileStats:
        return CompileStats(self.requested - other.requested, self.from_cache - other.from_cache)


def _listen() -> None:
    global _listening
    if _listening:
        return

    def on_duration(event: str, _seconds: float, **_kw) -> None:
        if event == _REQUESTED:
            _counts["requested"] += 1

    def on_event(event: str, **_kw) -> None:
        if event == _HIT:
            _counts["hits"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    _listening = True


def stats() -> CompileStats:
    """The counts so far (subtract two of them for what happened in between)."""
    _listen()
    return CompileStats(_counts["requested"], _counts["hits"])


def default_dir() -> Path:
    """``$HAGFISH_CACHE_DIR``, else ``$XDG_CACHE_HOME/hagfish_jax/xla``, else
    ``~/.cache/hagfish_jax/xla``."""
    own = os.environ.get("HAGFISH_CACHE_DIR")
    if own:
        return Path(own).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hagfish_jax" / "xla"


def enable(path: str | os.PathLike | None = None) -> Path:
    """Cache every compiled XLA program in ``path`` (default :func:`default_dir`).

    Call it before the first jitted call of the process: JAX decides whether to use
    the cache when it first compiles. Programs are cached whatever their compile time
    or size (JAX's defaults skip those under a second, which on a CPU is most of them).

    Returns:
      The directory, created if needed.

    Raises:
      NotADirectoryError: ``path`` exists and is a file.
    """
    directory = Path(path).expanduser() if path is not None else default_dir()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"compile cache: {directory} is a file, not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    _listen()
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory
