"""Pin this process to one CPU core for a while: a workaround for an XLA CPU runtime stall.

On a 2-core machine jax 0.10's CPU runtime sometimes never finishes a vmapped
program (the PPO-on-CartPole population, a batched QR): the host waits for a result
while every XLA worker thread sleeps. It is not in hagfish code. jax 0.9.2 has not
shown it in any count here, and pinned to one core it has not happened either, at
about twice the wall time (``benchmarks/stall.py``; counts in ``RESULTS.md``).
hagfish_jax therefore requires ``jax<0.10``. :func:`stall_prone` says whether the
installed jax is a release with the stall, for anyone who installs 0.10 anyway, and
:func:`pinned_if_needed` pins only then.

:func:`one_cpu` pins every thread of the process (the ones XLA already started
included) and restores the previous affinity afterwards. It does nothing where
affinity is not supported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["one_cpu", "pinned_if_needed", "stall_prone"]

#: The first jax release line with the stall; no later release is known to fix it.
STALL_FROM = (0, 10)


def stall_prone(version: str | None = None) -> bool:
    """Whether jax ``version`` (default: the installed one) is a release with the
    stall (0.10 or later).

    >>> stall_prone("0.9.2"), stall_prone("0.10.2"), stall_prone("0.10.0.dev20260101")
    (False, True, True)
    """
    if version is None:
        from importlib.metadata import version as installed

        version = installed("jax")
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= STALL_FROM


def pinned_if_needed() -> contextlib.AbstractContextManager:
    """:func:`one_cpu` when the installed jax is :func:`stall_prone`, else nothing."""
    return one_cpu() if stall_prone() else contextlib.nullcontext()


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextlib.contextmanager
def one_cpu() -> Iterator[None]:
    """Run the body with every thread of this process on one of its allowed cores."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    target = {min(before)}
    for tid in _threads():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, target)
    try:
        yield
    finally:
        for tid in _threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, before)
