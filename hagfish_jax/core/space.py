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

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _draws as draws
from ._checks import integer
from .dimensions import Choice, Dimension, IntUniform, LogUniform, Uniform, _Interval

__all__ = [
    "Choice",
    "Dimension",
    "IntUniform",
    "LogUniform",
    "Space",
    "Uniform",
]

HParams = dict[str, jax.Array]


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
        u = draws.uniform(key, shape + (len(self),))
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
        names = [n for n in self.names if n in hp]
        shape = jnp.broadcast_shapes(*(jnp.shape(hp[n]) for n in names)) if names else ()
        # one draw for every dimension: each random call site is a kernel to compile
        u = draws.uniform(key, shape + (len(names),))
        return self.perturb_with(hp, {n: u[..., i] < 0.5 for i, n in enumerate(names)}, factors)

    def perturb_with(
        self,
        hp: Mapping[str, jax.Array],
        up: Mapping[str, jax.Array],
        factors: tuple[float, float] = (0.8, 1.25),
    ) -> HParams:
        """:meth:`perturb` with the coin flips given: ``up[name]`` (bool, broadcast
        against the value) picks ``factors[1]``, else ``factors[0]``. For callers that
        draw all their randomness at once (``pbt``).

        >>> import jax.numpy as jnp, hagfish_jax as hj
        >>> space = hj.Space(lr=hj.LogUniform(1e-4, 1.0))
        >>> out = space.perturb_with({"lr": jnp.array([0.1, 0.1])},
        ...                          {"lr": jnp.array([True, False])})
        >>> [round(float(v), 3) for v in out["lr"]]
        [0.125, 0.08]
        """
        self._check_names(hp.keys(), "perturb")
        if len(factors) != 2 or not all(math.isfinite(float(f)) and f > 0 for f in factors):
            raise ValueError(f"perturb: factors must be two positive numbers, got {factors!r}")
        missing = [n for n in hp if n not in up]
        if missing:
            raise ValueError(f"perturb_with: no coin flip for {missing}")
        dims = self.dims
        out = {}
        for n in self.names:
            if n not in hp:
                continue
            x = jnp.asarray(hp[n], jnp.float32)
            f = jnp.where(up[n], jnp.float32(factors[1]), jnp.float32(factors[0]))
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
