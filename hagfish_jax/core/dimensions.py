"""Search-space dimensions: :class:`Uniform`, :class:`LogUniform`, :class:`IntUniform`
and :class:`Choice`. Each checks its bounds when it is made (a clear ``ValueError``
naming what is wrong) and maps values to and from the unit interval in jnp, so tuners
work in ``[0, 1]^d`` whatever the scale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["Choice", "Dimension", "IntUniform", "LogUniform", "Uniform"]


_F32 = np.finfo(np.float32)


def _check_bound(name: str, label: str, value: Any) -> float:
    """A bound as a float: a real number (not a string or a bool), finite, and one that
    float32 (what tuners compute in) represents: within +-3.4e38, and 0 or at least
    1.2e-38 in size."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not real:
        raise ValueError(f"{name}: {label} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: {label} must be finite, got {value!r}")
    if abs(v) > float(_F32.max) or (v != 0.0 and abs(v) < float(_F32.tiny)):
        raise ValueError(
            f"{name}: {label} must be 0 or between {float(_F32.tiny):.3g} and "
            f"{float(_F32.max):.3g} in size (float32), got {value!r}"
        )
    return v


@dataclasses.dataclass(frozen=True)
class Dimension:
    """Base class of a search-space dimension. Use the subclasses.

    Each subclass implements ``_validate(name)`` and, as jnp functions of float32
    arrays, ``to_unit(x)``, ``from_unit(u)``, ``clip(x)`` and ``perturb(x, factor)``;
    ``to_python(x)`` turns one host value into a plain Python value (here a float).
    """

    def to_python(self, x: Any) -> Any:
        return float(x)

    def __post_init__(self) -> None:  # bad bounds fail here, not at the first sample
        validate = getattr(self, "_validate", None)
        if validate is not None:
            validate(type(self).__name__)


@dataclasses.dataclass(frozen=True)
class _Interval(Dimension):
    """Bounds ``[low, high]`` shared by :class:`Uniform`, :class:`LogUniform` and
    :class:`IntUniform`; linear in unit space unless a subclass says otherwise."""

    low: float
    high: float
    dynamic: bool = True

    def _validate(self, name: str) -> None:
        lo = _check_bound(name, "low", self.low)
        hi = _check_bound(name, "high", self.high)
        self._check_domain(name, lo, hi)
        if lo >= hi:
            raise ValueError(
                f"{name}: low must be < high, got low={self.low!r}, high={self.high!r}"
            )
        if hi - lo > float(_F32.max):
            raise ValueError(
                f"{name}: high - low must be at most {float(_F32.max):.3g} (float32), got "
                f"low={self.low!r}, high={self.high!r}"
            )

    def _check_domain(self, name: str, lo: float, hi: float) -> None:
        del name, lo, hi

    def to_unit(self, x):
        return (x - self.low) / (self.high - self.low)

    def clip(self, x):
        return jnp.clip(x, self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Uniform(_Interval):
    """A real interval ``[low, high]``, linear in unit space. Dynamic by default."""

    def from_unit(self, u):
        return jnp.clip(self.low + u * (self.high - self.low), self.low, self.high)

    def perturb(self, x, factor):
        # Multiplicative around the value, with a floor so a value at 0 still moves.
        scale = jnp.maximum(jnp.abs(x), 0.05 * (self.high - self.low))
        return self.clip(x + (factor - 1.0) * scale)


@dataclasses.dataclass(frozen=True)
class LogUniform(_Interval):
    """A positive interval ``[low, high]``, linear in ``log`` in unit space."""

    def _check_domain(self, name: str, lo: float, hi: float) -> None:
        if lo <= 0 or hi <= 0:
            raise ValueError(
                f"{name}: bounds must be > 0, got low={self.low!r}, high={self.high!r}"
            )

    def to_unit(self, x):
        lo, hi = math.log(self.low), math.log(self.high)
        return (jnp.log(jnp.maximum(x, self.low * 1e-6)) - lo) / (hi - lo)

    def from_unit(self, u):
        lo, hi = math.log(self.low), math.log(self.high)
        return jnp.clip(jnp.exp(lo + u * (hi - lo)), self.low, self.high)

    def perturb(self, x, factor):
        return self.clip(x * factor)


@dataclasses.dataclass(frozen=True)
class IntUniform(_Interval):
    """Integers ``low..high`` inclusive. Structural by default (widths, depths)."""

    low: int
    high: int
    dynamic: bool = False

    def _check_domain(self, name: str, lo: float, hi: float) -> None:
        if lo != int(lo) or hi != int(hi):
            raise ValueError(
                f"{name}: bounds must be integers, got low={self.low!r}, "
                f"high={self.high!r}"
            )
        if max(abs(lo), abs(hi)) > 2**24:
            raise ValueError(
                f"{name}: bounds must be within +-2**24 (exact in float32), got "
                f"low={self.low!r}, high={self.high!r}"
            )

    # Unit space is cut into one equal bin per integer (as for Choice), so a uniform
    # draw gives every integer the same chance, the end ones included; an integer
    # maps to the centre of its bin.
    def to_unit(self, x):
        return (jnp.round(x) - self.low + 0.5) / (self.high - self.low + 1)

    def from_unit(self, u):
        k = jnp.floor(self.low + u * (self.high - self.low + 1))
        return jnp.clip(k, self.low, self.high)

    def clip(self, x):
        return jnp.clip(jnp.round(x), self.low, self.high)

    def perturb(self, x, factor):
        moved = jnp.round(x * factor)
        # Always move by at least one step in the direction of the factor.
        return self.clip(jnp.where(moved == x, x + jnp.sign(factor - 1.0), moved))

    def to_python(self, x):
        return int(round(float(x)))


@dataclasses.dataclass(frozen=True)
class Choice(Dimension):
    """A finite ordered set of values. Structural by default.

    Numeric choices are carried as their value (``batch_size=64.0``); non-numeric
    ones (``"adam"``) as their index (``0.0``, ``1.0``, ...). :meth:`Space.to_python`
    gives back the original objects either way.

    A non-numeric choice may be dynamic too, provided the task reads the index inside
    jit rather than branching on it in Python: the classification task's
    ``optimizer`` is one such, computing every listed update rule and keeping the one
    the index picks (:func:`hagfish_jax.tasks.classification.make_task`).
    """

    values: tuple
    dynamic: bool = False

    def __init__(self, values: Sequence[Any], dynamic: bool = False):
        if isinstance(values, (str, bytes)):
            raise ValueError(
                f"Choice: values must be a list or tuple of choices, not the string {values!r}"
            )
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "dynamic", bool(dynamic))
        self._validate("Choice")

    @property
    def numeric(self) -> bool:
        return all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in self.values
        )

    def _validate(self, name: str) -> None:
        if len(self.values) == 0:
            raise ValueError(f"{name}: Choice needs at least one value, got an empty list")
        seen = []
        for v in self.values:
            if v in seen:
                raise ValueError(f"{name}: Choice values must be distinct, {v!r} appears twice")
            seen.append(v)
        if self.numeric:
            for v in self.values:
                _check_bound(name, "choice", v)

    def _table(self) -> np.ndarray:
        if self.numeric:
            return np.asarray(self.values, np.float32)
        return np.arange(len(self.values), dtype=np.float32)

    def _index(self, x):
        return jnp.argmin(jnp.abs(x[..., None] - self._table()), axis=-1)

    def to_unit(self, x):
        n = len(self.values)
        return (self._index(x).astype(jnp.float32) + 0.5) / n

    def from_unit(self, u):
        n = len(self.values)
        idx = jnp.clip(jnp.floor(u * n), 0, n - 1).astype(jnp.int32)
        return jnp.asarray(self._table())[idx]

    def clip(self, x):
        return jnp.asarray(self._table())[self._index(x)]

    def perturb(self, x, factor):
        n = len(self.values)
        idx = self._index(x) + jnp.sign(factor - 1.0).astype(jnp.int32)
        return jnp.asarray(self._table())[jnp.clip(idx, 0, n - 1)]

    def to_python(self, x):
        # the nearest choice (an index for non-numeric values), as clip() reads it
        return self.values[int(np.argmin(np.abs(self._table() - float(x))))]
