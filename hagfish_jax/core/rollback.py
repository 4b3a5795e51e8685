"""Rollback rules shared by the tuned program and the guard: which hyperparameters a
repeated divergence shrinks, how a member's shrink factors scale what its tuner
proposes, and the noise a restart from a best state (``spawn``) puts on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .base import HParams

__all__ = ["is_learning_rate", "noised", "scaled", "shrink_factors", "unscaled"]


def is_learning_rate(name: str) -> bool:
    """``learning_rate`` itself or a prefixed one (``"encoder/learning_rate"``)."""
    return name == "learning_rate" or name.endswith("/learning_rate")


def shrink_factors(
    shrink: Mapping[str, float] | None, names: tuple[str, ...], where: str
) -> dict[str, float]:
    """``{name: factor}`` checked against ``names``: ``None`` gives 0.1 for every
    learning rate among them, ``{}`` none; factors must lie in (0, 1).

    >>> shrink_factors(None, ("learning_rate", "b1"), "f")
    {'learning_rate': 0.1}
    """
    if shrink is None:
        return {k: 0.1 for k in names if is_learning_rate(k)}
    if not isinstance(shrink, Mapping):
        raise TypeError(f"{where}: shrink must be a mapping name -> factor, got {shrink!r}")
    out = {}
    for name, factor in shrink.items():
        if isinstance(factor, bool) or not 0.0 < float(factor) < 1.0:
            raise ValueError(f"{where}: shrink[{name!r}] must be in (0, 1), got {factor!r}")
        if name not in names:
            raise ValueError(
                f"{where}: shrink names {name!r}, which is not tuned here; "
                f"accepted: {sorted(names)}"
            )
        out[str(name)] = float(factor)
    return out


def scaled(hp: HParams, shrink: Mapping[str, jax.Array], space: Any) -> HParams:
    """The tuner's values times each member's shrink factor (1 until it diverged past
    the cap), clipped into the space."""
    return _rescaled(hp, shrink, space, lambda v, scale: v * scale)


def unscaled(hp: HParams, shrink: Mapping[str, jax.Array], space: Any) -> HParams:
    """The tuner's own values behind the ones in force: ``hp`` over each member's shrink
    factor, clipped into the space. A tuner that starts from the values it observes
    sees these, so the factor is applied once, not again every window."""
    return _rescaled(hp, shrink, space, lambda v, scale: v / scale)


def _rescaled(hp: HParams, shrink: Mapping[str, jax.Array], space: Any, op) -> HParams:
    """``hp`` with ``op(value, factor)`` clipped into the space where a factor is below 1."""
    out = dict(hp)
    for name, scale in shrink.items():
        if name in out:
            v = jnp.asarray(out[name], jnp.float32)
            moved = space[name].clip(op(v, scale)).astype(jnp.float32)
            out[name] = jnp.where(scale < 1.0, moved, v)
    return out


def noised(
    key: jax.Array, hp: HParams, names: Sequence[str], scale, where, space: Any = None
) -> HParams:
    """``hp`` with each of ``names`` times ``1 + scale * u`` (``u`` uniform in [-1, 1],
    one draw per name and member) where ``where`` holds, clipped into ``space``."""
    keys = jax.random.split(key, max(len(names), 1))
    out = dict(hp)
    for k, name in zip(keys, names):
        z = jax.random.uniform(k, jnp.shape(hp[name]), minval=-1.0, maxval=1.0)
        v = hp[name] * (1.0 + scale * z)
        if space is not None:
            v = space[name].clip(v).astype(jnp.float32)
        out[name] = jnp.where(where, v, hp[name])
    return out
