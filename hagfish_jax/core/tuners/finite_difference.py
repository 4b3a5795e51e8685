"""Two-phase finite difference in unit space, one dimension at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..base import HParams, Observation, Proposal, Tuner, keep_parents
from ..space import Space
from ._common import applied, check_init, score_of, tuned_space, write_unit

__all__ = ["FiniteDifferenceState", "finite_difference"]

_ON_BOUND = 1e-5  # unit distance that counts as sitting on a bound

_BASELINE, _PROBE = 0, 1


class FiniteDifferenceState(NamedTuple):
    """State of :func:`finite_difference`.

    Attributes:
      hparams: the last proposal (every name, tuned or not).
      base: the committed point in unit space, ``(d,)``.
      base_score: the score measured at ``base``.
      steps: per-dimension probe step in unit space, ``(d,)``.
      direction: per-dimension probe direction, +1 or -1, ``(d,)``.
      dim: the dimension being probed.
      phase: 0 = the next score measures ``base``; 1 = it measures the probe.
    """

    hparams: HParams
    base: jax.Array
    base_score: jax.Array
    steps: jax.Array
    direction: jax.Array
    dim: jax.Array
    phase: jax.Array


def finite_difference(
    space: Space,
    names: Iterable[str] | None = None,
    step: float = 0.1,
    min_step: float = 0.02,
    max_step: float = 0.3,
    shrink: float = 0.7,
    grow: float = 1.5,
    tolerance: float = 1e-3,
) -> Tuner:
    """Probe one dimension, then commit: keep a better probe, otherwise go the other way.

    Each dimension takes two windows. In the *baseline* window the committed point
    is measured; the tuner then proposes a *probe* that moves one dimension by its
    step in unit space (towards the inside when the point sits on a bound). After
    the probe window:

    * probe better than the baseline: commit the probe;
    * otherwise: commit the mirror image on the other side of the baseline
      (clipped to the bounds), and flip that dimension's direction.

    The step shrinks (``* shrink``) after a relative improvement above
    ``tolerance``, grows (``* grow``) on a plateau (a change within
    ``tolerance``), and always stays in ``[min_step, max_step]``. Dimensions
    are visited round-robin. Log dimensions move multiplicatively because unit
    space is logarithmic there.

    Args:
      space: the search space.
      names: dimensions to tune; default every dynamic one.
      step: initial step in unit space.
      min_step, max_step: bounds on the step.
      shrink, grow: step multipliers.
      tolerance: relative score change treated as a plateau.

    >>> import jax, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
    >>> tuner = hj.finite_difference(space)
    >>> state = tuner.init(jax.random.key(0), {"learning_rate": 1e-3})
    >>> probe, state = tuner.update(state, hj.Observation(score=0.5))  # baseline
    >>> bool(probe.hparams["learning_rate"] > 1e-3)
    True
    """
    sub = tuned_space(space, names, "finite_difference")
    if not 0.0 < min_step <= step <= max_step <= 1.0:
        raise ValueError(
            "finite_difference: need 0 < min_step <= step <= max_step <= 1, got "
            f"min_step={min_step!r}, step={step!r}, max_step={max_step!r}"
        )
    if not 0.0 < shrink <= 1.0:
        raise ValueError(f"finite_difference: shrink must be in (0, 1], got {shrink!r}")
    if not grow >= 1.0:
        raise ValueError(f"finite_difference: grow must be >= 1, got {grow!r}")
    if not tolerance >= 0.0:
        raise ValueError(f"finite_difference: tolerance must be >= 0, got {tolerance!r}")
    d = len(sub)

    def init(key, hparams) -> FiniteDifferenceState:
        del key
        hp = check_init(sub, hparams, "finite_difference")
        u = sub.to_unit({n: hp[n] for n in sub.names})
        return FiniteDifferenceState(
            hparams=hp,
            base=u,
            base_score=jnp.asarray(jnp.nan, jnp.float32),
            steps=jnp.full((d,), step, jnp.float32),
            direction=jnp.ones((d,), jnp.float32),
            dim=jnp.asarray(0, jnp.int32),
            phase=jnp.asarray(_BASELINE, jnp.int32),
        )

    def update(state: FiniteDifferenceState, obs: Observation):
        hp = applied(obs, state.hparams)
        u = sub.to_unit({n: hp[n] for n in sub.names})  # where the window really ran
        score = score_of(obs)
        i = state.dim
        onehot = jnp.arange(d) == i

        # Phase 0: the window measured the committed point; propose a probe.
        s_i = state.direction[i]
        target = u[i] + s_i * state.steps[i]
        # sitting on the bound it points at (to float32 rounding: under jit a log
        # bound's unit value can come out a hair inside it)
        room = jnp.where(s_i > 0, 1.0 - u[i], u[i])
        stuck = (room <= _ON_BOUND) & (jnp.clip(target, 0.0, 1.0) != target)
        s_i = jnp.where(stuck, -s_i, s_i)
        probe_i = jnp.clip(u[i] + s_i * state.steps[i], 0.0, 1.0)
        probe = jnp.where(onehot, probe_i, u)
        dir_after_baseline = jnp.where(onehot, s_i, state.direction)

        # Phase 1: the window measured the probe; commit.
        base_score = state.base_score
        # a finite score beats a non-finite baseline; a non-finite probe never wins
        better = (score > base_score) | (jnp.isfinite(score) & ~jnp.isfinite(base_score))
        rel = tolerance * jnp.abs(base_score)
        improved = score > base_score + rel
        flat = jnp.isfinite(score) & (jnp.abs(score - base_score) <= rel)
        moved = u[i] - state.base[i]
        moved = jnp.where(moved == 0.0, state.direction[i] * state.steps[i], moved)
        mirror_i = jnp.clip(state.base[i] - moved, 0.0, 1.0)
        commit = jnp.where(better, u, jnp.where(onehot, mirror_i, state.base))
        factor = jnp.where(improved, shrink, jnp.where(flat, grow, 1.0))
        steps_after_probe = jnp.where(
            onehot, jnp.clip(state.steps * factor, min_step, max_step), state.steps
        )
        dir_after_probe = jnp.where(onehot & ~better, -state.direction, state.direction)

        in_baseline = state.phase == _BASELINE
        new_u = jnp.where(in_baseline, probe, commit)
        new_state = FiniteDifferenceState(
            hparams=write_unit(sub, hp, new_u),
            base=jnp.where(in_baseline, u, state.base),
            base_score=jnp.where(in_baseline, score, state.base_score).astype(jnp.float32),
            steps=jnp.where(in_baseline, state.steps, steps_after_probe).astype(jnp.float32),
            direction=jnp.where(in_baseline, dir_after_baseline, dir_after_probe).astype(
                jnp.float32
            ),
            dim=jnp.where(in_baseline, i, (i + 1) % d).astype(jnp.int32),
            phase=jnp.where(in_baseline, _PROBE, _BASELINE).astype(jnp.int32),
        )
        explore = new_state.phase == _PROBE
        return Proposal(new_state.hparams, keep_parents(), jnp.asarray(False), explore), new_state

    return Tuner(init, update)
