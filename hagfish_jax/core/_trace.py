"""Tracing a tuned program with Python's cyclic garbage collector paused.

JAX's tracing allocates hundreds of thousands of short-lived objects (tracers, abstract
values, equations). Those allocations keep triggering the cyclic collector, and its
older-generation passes walk every object the process holds: jax, flax, the user's data.
On the digits population program those passes took a third of the trace
(``benchmarks/RESULTS.md``, "Stop 24"). :func:`quiet_gc` pauses the collector for the
duration of one call and resumes it after. Nothing is left uncollected: any cyclic
garbage made meanwhile goes on the collector's next pass. Reference counting, which frees
almost everything, is not affected.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import TypeVar

__all__ = ["quiet_gc"]

F = TypeVar("F", bound=Callable)


def quiet_gc(fn: F) -> F:
    """``fn`` with the cyclic garbage collector paused while it runs (a no-op when it is
    already paused, by a caller or by the user; it is resumed even if ``fn`` raises).

    >>> import gc
    >>> quiet_gc(gc.isenabled)(), gc.isenabled()
    (False, True)
    """

    @functools.wraps(fn)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused  # type: ignore[return-value]
