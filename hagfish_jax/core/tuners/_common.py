"""Helpers shared by the single-run tuners."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp

from ..base import HParams, Observation, as_hparams
from ..space import Space


def tuned_space(space: Space, names: Iterable[str] | None, where: str) -> Space:
    """The sub-space a tuner moves: ``names`` (default: every dynamic dimension)."""
    if not isinstance(space, Space):
        raise TypeError(f"{where}: space must be a hagfish_jax.Space, got {type(space).__name__}")
    if names is None:
        names = sorted(space.dynamic)
        if not names:
            raise ValueError(f"{where}: the space has no dynamic dimension to tune")
    names = list(names)
    if not names:
        raise ValueError(f"{where}: names must not be empty")
    sub = space.subspace(names)
    structural = sorted(set(names) & space.structural)
    if structural:
        raise ValueError(
            f"{where}: {structural} are structural (they change shapes or code) and cannot "
            "change inside jit; tune them from the shell"
        )
    return sub


def check_init(sub: Space, hp: Mapping[str, jax.Array], where: str) -> HParams:
    """The starting values as float32 arrays, the tuned ones clipped into the space (a
    warning says so when a concrete value was outside it; a concrete NaN or inf is
    refused: there is nothing to clip it to)."""
    missing = [n for n in sub.names if n not in hp]
    if missing:
        raise ValueError(f"{where}.init: hparams lack tuned name(s) {missing}; got {sorted(hp)}")
    hp = as_hparams(dict(hp))
    clipped = sub.clip({n: hp[n] for n in sub.names})
    for n, value in clipped.items():
        if isinstance(hp[n], jax.core.Tracer):
            continue
        if not bool(jnp.all(jnp.isfinite(hp[n]))):
            raise ValueError(
                f"{where}.init: {n} must be a finite number to start from, got "
                f"{float(jnp.ravel(hp[n])[0])!r}"
            )
        if not bool(jnp.all(value == hp[n])):
            warnings.warn(
                f"{where}.init: {n}={float(jnp.ravel(hp[n])[0]):.6g} is outside the space "
                f"{sub[n]!r}; starting from {float(jnp.ravel(value)[0]):.6g}",
                stacklevel=3,
            )
    return {**hp, **clipped}


def applied(obs: Observation, last: HParams) -> HParams:
    """The values in force during the observed window."""
    if obs.hparams is None:
        return last
    merged = dict(last)
    merged.update({k: jnp.asarray(v, jnp.float32) for k, v in obs.hparams.items() if k in last})
    return merged


def write_unit(sub: Space, hp: HParams, u: jax.Array) -> HParams:
    """``hp`` with the tuned names replaced by ``from_unit(u)``; dtypes kept."""
    out = dict(hp)
    out.update(sub.from_unit(u))
    return {k: v.astype(jnp.float32) for k, v in out.items()}


def score_of(obs: Observation) -> jax.Array:
    return jnp.asarray(obs.score, jnp.float32)
