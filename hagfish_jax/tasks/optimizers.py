"""The update rules of the classification tasks: AdamW, SGD with momentum, and both
side by side with an ``optimizer`` switch (re-exported by :mod:`.classification`)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from ..core.space import Choice, LogUniform, Space, Uniform

__all__ = ["OPTIMIZERS", "hpo_space"]

#: The search space of the multi-agent tuner. ``optimizer`` is carried as its index into
#: :data:`OPTIMIZERS` (0.0 adam, 1.0 sgd) and switches inside jit in a task made with
#: ``optimizers=("adam", "sgd")``; ``batch_size`` is structural (a trial builds its task
#: with ``make_task(..., batch_size=...)``, and another batch size needs another task);
#: the other three are dynamic. Names it lacks (``b1``, ``dropout_rate``) keep their
#: :data:`default_hparams`.
hpo_space = Space(
    optimizer=Choice(["adam", "sgd"], dynamic=True),
    learning_rate=LogUniform(1e-4, 1e-1),
    batch_size=Choice([32, 64, 128, 256, 512]),
    weight_decay=LogUniform(1e-5, 1e-1),
    label_smoothing=Uniform(0.0, 0.2),
)

#: The update rules ``make_task(optimizers=...)`` knows, in the order of the
#: ``optimizer`` index: AdamW, and SGD with momentum ``b1`` and weight decay.
OPTIMIZERS = ("adam", "sgd")

_OPTIMIZER_HPARAMS = ("learning_rate", "weight_decay", "b1")


def _sgd(learning_rate, weight_decay, b1) -> optax.GradientTransformation:
    """SGD with momentum ``b1``; ``weight_decay * params`` is added to the gradient
    before the momentum trace (as ``torch.optim.SGD`` does)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=b1)
    )


def _adam_or_sgd(learning_rate, weight_decay, b1, optimizer) -> optax.GradientTransformation:
    """AdamW and :func:`_sgd` side by side; ``optimizer`` (an array) picks whose update
    is applied: AdamW below 0.5, SGD from 0.5 on.

    Both states are updated at every step, whichever is in force, so a switch takes
    over a warm state. The price is two sets of optimizer moments (AdamW's two and
    SGD's momentum: three arrays the size of the parameters) and both updates'
    arithmetic at every step.
    """
    adam = optax.adamw(learning_rate, b1=b1, weight_decay=weight_decay)
    sgd = _sgd(learning_rate, weight_decay, b1)

    def init(params):
        return adam.init(params), sgd.init(params)

    def update(updates, state, params=None):
        adam_updates, adam_state = adam.update(updates, state[0], params)
        sgd_updates, sgd_state = sgd.update(updates, state[1], params)
        use_sgd = jnp.asarray(optimizer) >= 0.5
        chosen = jax.tree.map(lambda s, a: jnp.where(use_sgd, s, a), sgd_updates, adam_updates)
        return chosen, (adam_state, sgd_state)

    return optax.GradientTransformation(init, update)


def _check_optimizers(optimizers: Sequence[str]) -> tuple[str, ...]:
    if isinstance(optimizers, str) or not isinstance(optimizers, Sequence):
        raise ValueError(
            f"make_task: optimizers must be a list or tuple of names, got {optimizers!r}"
        )
    names = tuple(optimizers)
    if not names:
        raise ValueError(f"make_task: optimizers must name at least one of {list(OPTIMIZERS)}")
    for name in names:
        if name not in OPTIMIZERS:
            raise ValueError(f"make_task: unknown optimizer {name!r}; known: {list(OPTIMIZERS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"make_task: optimizers lists a name twice: {list(names)}")
    return names


def _make_tx(
    optimizers: tuple[str, ...], d: dict[str, float], space: Space
) -> tuple[optax.GradientTransformation, Space]:
    """``(tx, task_space)`` for ``make_task``: one update rule, or both with the
    ``optimizer`` switch (then ``d`` gains ``"optimizer"``, in place, and the space too)."""
    task_space = space
    if len(optimizers) == 1:
        factory = optax.adamw if optimizers[0] == "adam" else _sgd
        tx = optax.inject_hyperparams(factory, hyperparam_dtype=jnp.float32)(
            learning_rate=d["learning_rate"], weight_decay=d["weight_decay"], b1=d["b1"]
        )
    else:
        d["optimizer"] = float(OPTIMIZERS.index(optimizers[0]))
        task_space = Space(**space.dims, optimizer=Choice(list(OPTIMIZERS), dynamic=True))
        tx = optax.inject_hyperparams(_adam_or_sgd, hyperparam_dtype=jnp.float32)(
            learning_rate=d["learning_rate"],
            weight_decay=d["weight_decay"],
            b1=d["b1"],
            optimizer=d["optimizer"],
        )
    return tx, task_space
