"""Argument checks shared by the factories: clear errors before any work is done."""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["integer", "integer_or_array"]


def integer(where: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` if it is a whole number ``>= minimum``.

    Python and NumPy integers, whole floats (``2.0``) and concrete 0-d integer or
    float arrays are accepted; booleans, fractions, NaN/inf, strings, traced values
    and anything else are refused.

    Args:
      where: the function and argument, like ``"guard: warmup"``; it starts the
        error message.
      value: the value to check.
      minimum: the smallest accepted value.

    Returns:
      ``value`` as a Python ``int``.

    Raises:
      ValueError: ``value`` is not a whole number ``>= minimum``; the message says
        where, the accepted range and what came.

    >>> integer("guard: warmup", 2.0, 0)
    2
    >>> integer("plateau: patience", 2.5, 1)
    Traceback (most recent call last):
    ...
    ValueError: plateau: patience must be an integer >= 1, got 2.5
    """
    number = _number(value)
    ok = (
        number is not None
        and math.isfinite(number)
        and number == int(number)
        and number >= minimum
    )
    if not ok:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return int(number)


def _number(value: Any) -> int | float | None:
    """A real, non-boolean number as a Python scalar, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return value  # type: ignore[return-value]
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is None or shape != () or not (
        jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
    ):
        return None
    try:
        return value.item()  # a concrete array; a traced one cannot give its value
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def integer_or_array(where: str, value: Any, minimum: int) -> Any:
    """Like :func:`integer`, but a JAX array (possibly traced inside ``jit``) passes
    through unchanged: its value may not be known until the program runs.

    >>> integer_or_array("population.prune: k", 2.0, 0)
    2
    """
    if isinstance(value, jax.Array):
        return value
    return integer(where, value, minimum)
