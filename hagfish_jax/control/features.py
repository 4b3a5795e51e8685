"""What a controller sees and how its actions move hyperparameters.

The environment (:mod:`hagfish_jax.control.env`) and the tuner built from a trained
controller (:func:`hagfish_jax.control.learned`) share these functions, so a
controller sees the same numbers in meta-training and in use.

Observation, ``len(space) + NUM_FEATURES`` floats:

* the hyperparameters in the controller space's unit cube (sorted names);
* progress: windows trained / windows in the run;
* the validation loss over the first window's (``L / L1``), the training loss
  likewise, and their gap;
* the change of the validation loss over the last window and the one before, and of
  the training loss over the last window (each over ``L1``);
* how far the validation loss sits above its best so far (over ``L1``).

Losses are normalised by the validation loss after the first window, so tasks with
different class counts and scales look alike. A non-finite loss reads as
:data:`LOSS_CAP` times ``L1`` and every feature is clipped to ``[-CLIP, CLIP]``.

Actions: per dimension 0 (decrease), 1 (keep), 2 (increase) by ``step`` in the unit
cube; ``step=0.125`` moves the learning rate of a four-decade range by a factor of
about 3.2 and the batch size of 16..128 by 14.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["CLIP", "LOSS_CAP", "NUM_FEATURES", "History", "move", "observe", "push", "start"]

NUM_FEATURES = 8
#: A non-finite (or exploded) loss counts as this many times the first window's.
LOSS_CAP = 3.0
CLIP = 5.0


class History(NamedTuple):
    """The loss history a controller reads.

    Attributes:
      val: the last three validation losses, capped (oldest first).
      train: the last two training losses, capped.
      first: the first window's validation loss ``L1`` (the scale).
      best: the lowest validation loss so far.
      t: windows trained so far.
    """

    val: jax.Array
    train: jax.Array
    first: jax.Array
    best: jax.Array
    t: jax.Array


def _cap(loss, first) -> jax.Array:
    loss = jnp.asarray(loss, jnp.float32)
    top = LOSS_CAP * first
    return jnp.where(jnp.isfinite(loss), jnp.minimum(loss, top), top).astype(jnp.float32)


def start(val_loss, train_loss) -> History:
    """The history after the first window."""
    v = jnp.asarray(val_loss, jnp.float32)
    first = jnp.where(jnp.isfinite(v) & (v > 0), v, 1.0).astype(jnp.float32)
    v, tr = _cap(v, first), _cap(train_loss, first)
    return History(
        val=jnp.stack([v, v, v]),
        train=jnp.stack([tr, tr]),
        first=first,
        best=v,
        t=jnp.asarray(1, jnp.int32),
    )


def push(h: History, val_loss, train_loss) -> History:
    """The history after one more window."""
    v, tr = _cap(val_loss, h.first), _cap(train_loss, h.first)
    return History(
        val=jnp.concatenate([h.val[1:], v[None]]),
        train=jnp.concatenate([h.train[1:], tr[None]]),
        first=h.first,
        best=jnp.minimum(h.best, v),
        t=h.t + 1,
    )


def observe(h: History, unit: jax.Array, horizon) -> jax.Array:
    """The observation vector: ``unit`` then the :data:`NUM_FEATURES` loss features."""
    f = h.first
    v, tr = h.val[-1] / f, h.train[-1] / f
    feats = jnp.stack(
        [
            h.t / jnp.maximum(jnp.asarray(horizon, jnp.float32), 1.0),
            v,
            tr,
            v - tr,
            (h.val[-1] - h.val[-2]) / f,
            (h.val[-2] - h.val[-3]) / f,
            (h.train[-1] - h.train[-2]) / f,
            (h.val[-1] - h.best) / f,
        ]
    )
    obs = jnp.concatenate([jnp.asarray(unit, jnp.float32), feats.astype(jnp.float32)])
    return jnp.clip(obs, -CLIP, CLIP)


def move(unit: jax.Array, action: jax.Array, step: float) -> jax.Array:
    """``unit`` moved by ``step`` per dimension: action 0 down, 1 keep, 2 up."""
    delta = (jnp.asarray(action, jnp.float32) - 1.0) * step
    return jnp.clip(jnp.asarray(unit, jnp.float32) + delta, 0.0, 1.0)
