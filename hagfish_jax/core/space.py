"""Search spaces and the unit-cube transform every tuner works in.

A :class:`Space` is static, hashable configuration: it lives in a tuner's closure,
never in its state. Hyperparameters travel as a ``dict`` of float32 arrays (scalars
for one run, ``(N,)`` arrays for a population); every method below is a pure jnp
function of that dict, so it runs under ``jit``, ``vmap`` and ``lax.scan``.

Dimensions map to ``[0, 1]`` as follows:

* :class:`Uniform` linearly, :class:`LogUniform` linearly in ``log``;
* :class:`IntUniform` linearly, rounded back to the nearest integer;
* :class:`Choice` to the centre of its slot: value ``i`` of ``n`` sits at
  ``(i + 0.5) / n``.

Floats are *dynamic* (they may change inside a jitted program); integers and
choices are *structural* by default (they change shapes or code, so only the
Python shell may change them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import integer

__all__ = [
    "Choice",
    "Dimension",
    "IntUniform",
    "LogUniform",
    "Space",
    "Uniform",
]

HParams = dict[str, jax.Array]


def _check_bound(name: str, label: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {label} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: {label} must be finite, got {value!r}")
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
                f"{name}: LogUniform bounds must be > 0, got low={self.low!r}, high={self.high!r}"
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
                f"{name}: IntUniform bounds must be integers, got low={self.low!r}, "
                f"high={self.high!r}"
            )

    def from_unit(self, u):
        return jnp.clip(jnp.round(self.low + u * (self.high - self.low)), self.low, self.high)

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
    ones (``"adam"``) as their index. :meth:`Space.to_python` gives back the
    original objects either way.
    """

    values: tuple
    dynamic: bool = False

    def __init__(self, values: Sequence[Any], dynamic: bool = False):
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "dynamic", dynamic)

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
        if self.numeric:
            return self.values[int(np.argmin(np.abs(self._table() - float(x))))]
        return self.values[int(round(float(x)))]


class Space:
    """A named set of dimensions.

    Args:
      **dims: name -> :class:`Uniform`, :class:`LogUniform`, :class:`IntUniform`
        or :class:`Choice`.

    Raises:
      ValueError: on an empty space, a value that is not a dimension, or any
        invalid bound, naming the dimension and the rule it breaks.

    >>> import jax, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1), b1=hj.Uniform(0.8, 0.99))
    >>> hp = space.sample(jax.random.key(0))
    >>> sorted(hp)
    ['b1', 'learning_rate']
    >>> u = space.to_unit(hp)          # (2,) in [0, 1], names in sorted order
    >>> back = space.from_unit(u)
    >>> bool(abs(back["learning_rate"] - hp["learning_rate"]) < 1e-6)
    True
    """

    def __init__(self, **dims: Dimension):
        if not dims:
            raise ValueError("Space needs at least one dimension")
        for name, dim in dims.items():
            if not isinstance(dim, Dimension) or type(dim) in (Dimension, _Interval):
                raise ValueError(
                    f"{name}: expected Uniform, LogUniform, IntUniform or Choice, got {dim!r}"
                )
            dim._validate(name)
        self._dims: tuple[tuple[str, Dimension], ...] = tuple(sorted(dims.items()))

    # -- structure -----------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Dimension names in the fixed (sorted) order used by unit vectors."""
        return tuple(n for n, _ in self._dims)

    @property
    def dims(self) -> dict[str, Dimension]:
        return dict(self._dims)

    @property
    def dynamic(self) -> frozenset[str]:
        """Names that may change inside jitted code."""
        return frozenset(n for n, d in self._dims if d.dynamic)

    @property
    def structural(self) -> frozenset[str]:
        """Names that change shapes or code: only the Python shell may change them."""
        return frozenset(n for n, d in self._dims if not d.dynamic)

    def __len__(self) -> int:
        return len(self._dims)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Dimension:
        return self.dims[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self._dims == other._dims

    def __hash__(self) -> int:
        return hash(self._dims)

    def __repr__(self) -> str:
        return "Space(" + ", ".join(f"{n}={d!r}" for n, d in self._dims) + ")"

    def subspace(self, names) -> Space:
        """A space with only ``names`` (for example ``space.subspace(space.dynamic)``)."""
        self._check_names(names, "subspace")
        return Space(**{n: d for n, d in self._dims if n in set(names)})

    def _check_names(self, names, where: str) -> None:
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ValueError(
                f"{where}: unknown hyperparameter(s) {unknown}; the space has {list(self.names)}"
            )

    # -- sampling and transforms -------------------------------------------------------
    def sample(self, key: jax.Array, n: int | None = None) -> HParams:
        """Uniform samples in unit space, mapped back: scalars, or ``(n,)`` arrays (n >= 1)."""
        shape = () if n is None else (integer("Space.sample: n", n, 1),)
        u = jax.random.uniform(key, shape + (len(self),), jnp.float32)
        return self.from_unit(u)

    def to_unit(self, hp: Mapping[str, jax.Array]) -> jax.Array:
        """Stack ``hp`` into unit coordinates, shape ``batch + (len(space),)``.

        Every name of the space must be present; names outside it raise.
        """
        self._check_names(hp.keys(), "to_unit")
        missing = [n for n in self.names if n not in hp]
        if missing:
            raise ValueError(f"to_unit: missing hyperparameter(s) {missing}")
        cols = [d.to_unit(jnp.asarray(hp[n], jnp.float32)) for n, d in self._dims]
        return jnp.clip(jnp.stack(cols, axis=-1), 0.0, 1.0).astype(jnp.float32)

    def from_unit(self, u: jax.Array) -> HParams:
        """Inverse of :meth:`to_unit`; ``u`` has shape ``batch + (len(space),)``."""
        u = jnp.asarray(u, jnp.float32)
        if u.shape[-1:] != (len(self),):
            raise ValueError(
                f"from_unit: last axis must have size {len(self)} (one per dimension), "
                f"got shape {u.shape}"
            )
        return {
            n: d.from_unit(u[..., i]).astype(jnp.float32) for i, (n, d) in enumerate(self._dims)
        }

    def clip(self, hp: Mapping[str, jax.Array]) -> HParams:
        """Clip each given value into its dimension (rounding ints, snapping choices)."""
        self._check_names(hp.keys(), "clip")
        dims = self.dims
        return {
            n: dims[n].clip(jnp.asarray(v, jnp.float32)).astype(jnp.float32) for n, v in hp.items()
        }

    def perturb(
        self,
        key: jax.Array,
        hp: Mapping[str, jax.Array],
        factors: tuple[float, float] = (0.8, 1.25),
    ) -> HParams:
        """Multiply each value by one of ``factors`` picked at random, then clip.

        Log dimensions move multiplicatively; linear ones by ``(f - 1) * max(|x|,
        5% of the range)``; integers by at least one step; choices to the
        neighbouring value.
        """
        self._check_names(hp.keys(), "perturb")
        if len(factors) != 2 or not all(math.isfinite(float(f)) and f > 0 for f in factors):
            raise ValueError(f"perturb: factors must be two positive numbers, got {factors!r}")
        dims = self.dims
        out = {}
        keys = jax.random.split(key, len(self))
        for i, n in enumerate(self.names):
            if n not in hp:
                continue
            x = jnp.asarray(hp[n], jnp.float32)
            pick = jax.random.bernoulli(keys[i], 0.5, x.shape)
            f = jnp.where(pick, jnp.float32(factors[1]), jnp.float32(factors[0]))
            out[n] = dims[n].perturb(x, f).astype(jnp.float32)
        return out

    def contains(self, hp: Mapping[str, Any], atol: float = 1e-6) -> bool:
        """Whether every value lies inside its dimension (host-side check)."""
        dims = self.dims
        for n, v in hp.items():
            if n not in dims:
                return False
            arr, d = np.asarray(v, np.float64), dims[n]
            rel = atol * np.maximum(1.0, np.abs(arr))
            if isinstance(d, Choice):
                ok = np.min(np.abs(arr[..., None] - d._table().astype(np.float64)), axis=-1) <= rel
            else:
                tol = atol * max(1.0, abs(d.low), abs(d.high))
                ok = (arr >= d.low - tol) & (arr <= d.high + tol)
                if isinstance(d, IntUniform):
                    ok = ok & (np.abs(arr - np.round(arr)) <= rel)
            if not np.all(ok):
                return False
        return True

    def to_python(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        """Host-side plain values: floats, ints for integers, original choice objects
        (names outside the space come back as floats)."""
        dims, plain = self.dims, Dimension()
        return {n: dims.get(n, plain).to_python(np.asarray(v).item()) for n, v in hp.items()}
