"""Pin this process to one CPU core for a while: a workaround for an XLA CPU runtime stall.

On a 2-core machine the vmapped PPO-on-CartPole program sometimes never finishes:
the host waits for a result while every XLA worker thread sleeps (a lost wake-up in
XLA's CPU runtime, not in hagfish code; seen in about 1 run in 8 of the CartPole
demo, never with the process pinned to one core). :func:`one_cpu` pins every thread
of the process (the ones XLA already started included) and restores the previous
affinity afterwards. It does nothing where affinity is not supported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["one_cpu"]


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
