"""The baseline tuner: never changes anything."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from ..base import HParams, Observation, Proposal, Tuner, as_hparams, keep_parents

__all__ = ["FixedState", "fixed"]


class FixedState(NamedTuple):
    hparams: HParams


def fixed() -> Tuner:
    """Keep the initial hyperparameters for the whole run (the baseline).

    >>> import jax, hagfish_jax as hj
    >>> tuner = hj.fixed()
    >>> state = tuner.init(jax.random.key(0), {"learning_rate": 1e-3})
    >>> proposal, state = tuner.update(state, hj.Observation(score=0.5))
    >>> round(float(proposal.hparams["learning_rate"]), 6)
    0.001
    """

    def init(key, hparams) -> FixedState:
        del key
        return FixedState(as_hparams(dict(hparams)))

    def update(state: FixedState, obs: Observation):
        del obs
        return Proposal(state.hparams, keep_parents(), jnp.asarray(False)), state

    return Tuner(init, update)
