"""Argument checks shared by the factories: clear errors before any work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["integer"]


def integer(where: str, value: Any, minimum: int) -> int:
    """``value`` as an int if it is a whole number ``>= minimum``; else a ``ValueError``
    that says where, what was expected and what came (``where`` like ``"guard: warmup"``).

    >>> integer("guard: warmup", 2.0, 0)
    2
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == int(value)
    if not ok or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return int(value)
