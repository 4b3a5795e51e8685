"""The classification networks: an MLP, a small CNN, and dropout with a traced rate
(re-exported by :mod:`.classification`)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..core import _draws

__all__ = ["CNN", "MLP", "dropout"]



def dropout(module: nn.Module, x: jax.Array, rate: jax.Array, deterministic: bool) -> jax.Array:
    """Inverted dropout with a *traced* rate (``nn.Dropout`` needs a static one).

    Draws from the module's ``"dropout"`` RNG stream, which the caller passes as
    ``rngs={"dropout": key}``.
    """
    if deterministic:
        return x
    keep = 1.0 - jnp.asarray(rate, x.dtype)
    # drawn flat: under a population's vmap a draw of x's shape gains an axis, and XLA's
    # CPU backend compiles a 3-d draw several times slower (RESULTS, "Stop 25"); with
    # JAX's default threefry the mask is the one jax.random.bernoulli draws
    mask = _draws.uniform(module.make_rng("dropout"), x.shape) < keep
    return jnp.where(mask, x / jnp.maximum(keep, 1e-6), jnp.zeros_like(x))


class MLP(nn.Module):
    """Fully connected ReLU network with dropout after each hidden layer.

    Attributes:
      hidden: widths of the hidden layers.
      num_classes: number of output logits.
    """

    hidden: Sequence[int] = (64,)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, *, dropout_rate, deterministic: bool):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
            x = dropout(self, x, dropout_rate, deterministic)
        return nn.Dense(self.num_classes)(x)


class CNN(nn.Module):
    """Two small convolutions on the image (flat features reshaped to ``image_shape``),
    then a dense head with dropout.

    Attributes:
      image_shape: height, width, channels of one example.
      features: channels of the two convolutions.
      hidden: width of the dense layer.
      num_classes: number of output logits.
    """

    features: Sequence[int] = (16, 32)
    hidden: int = 64
    num_classes: int = 10
    image_shape: Sequence[int] = (8, 8, 1)

    @nn.compact
    def __call__(self, x, *, dropout_rate, deterministic: bool):
        x = x.reshape(x.shape[:-1] + tuple(self.image_shape))
        x = nn.relu(nn.Conv(self.features[0], (3, 3))(x))
        x = nn.relu(nn.Conv(self.features[1], (3, 3), strides=(2, 2))(x))  # -> 4x4
        x = x.reshape(x.shape[:-3] + (-1,))
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = dropout(self, x, dropout_rate, deterministic)
        return nn.Dense(self.num_classes)(x)
