"""Structural hyperparameters inside one compiled program: masked networks and batches.

Batch size, units per layer and number of layers normally change shapes, so changing
them means recompiling. Here the program is built once at the largest setting and the
smaller ones are masks over it:

* **units**: each hidden layer has ``max_units`` units; those at index ``>= units``
  are multiplied by zero, so the layer computes what a ``units``-wide layer computes
  (the weights into and out of a masked unit never touch the output, and get zero
  gradients);
* **layers**: hidden layer ``i >= num_layers`` is an identity (its input passes
  through), so the network is the ``num_layers``-deep one. Layer 0 is always on;
* **batch size**: every step draws ``max_batch`` examples and weights the first
  ``batch_size`` by ``1 / batch_size``, the rest by zero: the gradient of a
  ``batch_size`` batch.

:class:`MaskedMLP` equals the plain MLP it stands for (same outputs for the same
weights; ``tests/test_learned_env.py`` checks it). The compute of a step does not
shrink with the mask; :func:`compute_fraction` says what the setting *stands for*,
which is what the controller's cost term charges.

Trunks in front of the masked stack, one per modality:

* ``"mlp"`` (tabular): the features as they are;
* ``"cnn"`` (image): conv 3x3 -> max-pool 2 -> conv 3x3 -> max-pool 2 -> flatten;
* ``"text"``: a token embedding averaged over the non-padding tokens (a bag of
  embeddings; see :mod:`hagfish_jax.control.tasks` for why not an LSTM).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..core.space import Space
from ..tasks.models import dropout

__all__ = ["TRUNKS", "MaskedClassifier", "MaskedMLP", "Trunk", "compute_fraction"]

TRUNKS = ("mlp", "cnn", "text")


class MaskedMLP(nn.Module):
    """``max_layers`` ReLU layers of ``max_units`` units, masked down to ``num_layers``
    layers of ``units`` units, with dropout after each hidden layer, then the output.

    ``num_layers``, ``units`` and ``dropout_rate`` are traced values: changing them
    does not retrace. ``class_mask`` (bool, ``(num_classes,)``) turns unused output
    classes off (logit ``-1e9``), for data sets padded to a common class count.
    """

    max_layers: int = 4
    max_units: int = 256
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, *, num_layers, units, dropout_rate, deterministic: bool, class_mask=None):
        keep = (jnp.arange(self.max_units) < units).astype(x.dtype)
        h = x
        for i in range(self.max_layers):
            z = nn.relu(nn.Dense(self.max_units, name=f"hidden_{i}")(h)) * keep
            z = dropout(self, z, dropout_rate, deterministic)
            h = z if i == 0 else jnp.where(i < num_layers, z, h)
        logits = nn.Dense(self.num_classes, name="output")(h)
        if class_mask is not None:
            logits = jnp.where(class_mask, logits, -1e9)
        return logits


class Trunk(nn.Module):
    """The modality's feature extractor in front of the masked stack."""

    kind: str = "mlp"
    image_shape: Sequence[int] = (8, 8, 1)
    features: Sequence[int] = (16, 32)
    vocab_size: int = 2000
    embed_dim: int = 32

    @nn.compact
    def __call__(self, x):
        if self.kind == "mlp":
            return x
        if self.kind == "cnn":
            x = x.reshape(x.shape[:-1] + tuple(self.image_shape))
            for width in self.features:
                x = nn.relu(nn.Conv(width, (3, 3))(x))
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            return x.reshape(x.shape[:-3] + (-1,))
        if self.kind == "text":
            tokens = x.astype(jnp.int32)
            emb = nn.Embed(self.vocab_size, self.embed_dim)(tokens)
            present = (tokens > 0).astype(emb.dtype)[..., None]  # id 0 pads
            return jnp.sum(emb * present, axis=-2) / jnp.maximum(jnp.sum(present, axis=-2), 1.0)
        raise ValueError(f"Trunk: kind must be one of {TRUNKS}, got {self.kind!r}")


class MaskedClassifier(nn.Module):
    """A :class:`Trunk` followed by a :class:`MaskedMLP`."""

    trunk: Trunk
    head: MaskedMLP

    def __call__(self, x, **kwargs):
        return self.head(self.trunk(x), **kwargs)


def compute_fraction(space: Space):
    """``hparams -> fraction``: the share of the largest setting's training compute a
    window at ``hparams`` stands for.

    The product of ``batch_size / max`` and the hidden stack's multiply-adds per
    example, ``units**2 * num_layers`` against the largest (``1`` for a name the
    space lacks). A rough, documented proxy: it charges a controller for asking for
    a bigger batch or network, as a real run would pay in time.
    """

    def top(name: str) -> float | None:
        return float(space[name].high) if name in space else None

    b, u, layers = top("batch_size"), top("units"), top("num_layers")

    def fraction(hp) -> jax.Array:
        out = jnp.asarray(1.0, jnp.float32)
        if b is not None:
            out = out * hp["batch_size"] / b
        if u is not None:
            out = out * (hp["units"] / u) ** 2
        if layers is not None:
            out = out * hp["num_layers"] / layers
        return out

    return fraction
