"""Classification tasks: flax MLP/CNN, minibatch training, accuracy, loss and macro F1.

:func:`make_task` builds a :class:`ClassificationTask` (a :class:`hagfish_jax.Task`)
from any small dataset with flat float features and integer labels held in a
:class:`Split`. Everything it returns is pure and jittable, and works under
``jax.vmap`` over a population:

* ``init(key, hparams) -> TrainState``;
* ``train_window(state, key) -> (state, metrics)``: ``steps_per_window`` minibatch
  steps in one ``lax.scan``; ``metrics["diverged"]`` flags a window whose loss
  exploded (see :data:`UNIFORM_LOSS`);
* ``evaluate(state) -> metrics`` with ``"score"`` (validation accuracy), losses, F1;
* ``test(state)`` (the same on the held-out split) and ``test_accuracy(state)``.

The optimizer is ``optax.inject_hyperparams(optax.adamw)``, so ``learning_rate``,
``weight_decay`` and ``b1`` are arrays in the optimizer state; ``dropout_rate`` and
``label_smoothing`` live in an :class:`hagfish_jax.ExtraHParams` beside it. All five
change inside jit through :func:`hagfish_jax.set_hparams` without a retrace.
``make_task(..., optimizers=("adam", "sgd"))`` adds a sixth, ``optimizer``: the index
of the update rule in force (0.0 AdamW, 1.0 SGD with momentum), also switched inside
jit; :data:`hpo_space` is the search space of the multi-agent tuner over it.
:mod:`~hagfish_jax.tasks.digits` and :mod:`~hagfish_jax.tasks.breast_cancer` are small
modules on top of this one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core._checks import integer
from ..core.hparams import ExtraHParams, extra_hparams, set_hparams
from ..core.space import LogUniform, Space, Uniform
from ..core.task import Task, restore_only
from .models import CNN, MLP, dropout
from .optimizers import OPTIMIZERS, _check_optimizers, _make_tx, hpo_space

__all__ = [
    "CNN",
    "MLP",
    "OPTIMIZERS",
    "UNIFORM_LOSS",
    "ClassificationTask",
    "Split",
    "TrainState",
    "default_hparams",
    "dropout",
    "hpo_space",
    "macro_f1",
    "make_task",
    "minibatches",
    "require_sklearn",
    "space",
]

#: The dynamic hyperparameters of a classification task (all change inside jit).
space = Space(
    learning_rate=LogUniform(1e-4, 3e-1),
    weight_decay=LogUniform(1e-6, 1e-2),
    b1=Uniform(0.5, 0.99),
    dropout_rate=Uniform(0.0, 0.5),
    label_smoothing=Uniform(0.0, 0.2),
)

#: Sensible starting values.
default_hparams: dict[str, float] = {
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "b1": 0.9,
    "dropout_rate": 0.1,
    "label_smoothing": 0.0,
}

#: The loss of a uniform guess over the ten digits, ``ln 10``. A window has *diverged*
#: when its mean training loss is non-finite, above 1.25x the uniform guess's
#: (``ln num_classes``), or above it while rising (above 1.05x the loss of the window's
#: first minibatch): the network is then worse than knowing nothing. A slow start stays
#: below it and its loss falls. With two classes an untrained network's loss is often
#: above ``ln 2`` already, so there only a non-finite loss or one above 2.5x ``ln 2``
#: counts.
UNIFORM_LOSS = math.log(10.0)

_EXTRA_HPARAMS = ("dropout_rate", "label_smoothing")


def macro_f1(pred: jax.Array, y: jax.Array, num_classes: int) -> jax.Array:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class absent from
    both ``pred`` and ``y`` counts as 1 (nothing to get wrong).

    >>> import jax.numpy as jnp
    >>> round(float(macro_f1(jnp.array([0, 1, 1, 1]), jnp.array([0, 1, 0, 1]), 2)), 4)
    0.7333
    """
    p = jax.nn.one_hot(pred, num_classes)
    t = jax.nn.one_hot(y, num_classes)
    tp = jnp.sum(p * t, axis=0)
    denom = jnp.sum(p, axis=0) + jnp.sum(t, axis=0)
    return jnp.mean(jnp.where(denom > 0, 2.0 * tp / jnp.maximum(denom, 1.0), 1.0))


def minibatches(key: jax.Array, n_train: int, batch_size: int, steps: int) -> jax.Array:
    """A window's minibatch indices, ``(steps, batch_size)``: each epoch a fresh order of
    the ``n_train`` examples, the last partial batch of an epoch dropped.

    Each epoch's order sorts the indices by random 32-bit keys: one draw and one sort,
    where ``jax.random.permutation`` sorts in rounds; it is faster to compile alone
    under vmap, and within noise in a whole population program (benchmarks/RESULTS.md).
    Equal keys keep index order, so it is always a permutation. The keys are drawn
    flat, a multiple of 32 of them: XLA's CPU backend compiles that draw faster under a
    population's vmap, and with JAX's default threefry the first ``epochs * n_train``
    are the keys an ``(epochs, n_train)`` draw gives (RESULTS, "Stop 25").

    >>> import jax
    >>> idx = minibatches(jax.random.key(0), n_train=10, batch_size=4, steps=3)
    >>> idx.shape, len(set(idx[:2].ravel().tolist()))  # one epoch: 8 distinct examples
    ((3, 4), 8)
    """
    if not 1 <= batch_size <= n_train or steps < 1:
        raise ValueError(
            f"minibatches: need 1 <= batch_size <= n_train and steps >= 1, got "
            f"batch_size={batch_size!r}, n_train={n_train!r}, steps={steps!r}"
        )
    per_epoch = n_train // batch_size
    epochs = -(-steps // per_epoch)
    padded = -(-epochs * n_train // 32) * 32
    bits = jax.random.bits(key, (padded,), jnp.uint32)
    perms = jnp.argsort(bits[: epochs * n_train].reshape(epochs, n_train), axis=1)
    return perms[:, : per_epoch * batch_size].reshape(-1, batch_size)[:steps]


def require_sklearn(what: str = "this task"):
    try:
        import sklearn  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{what} needs scikit-learn; install it with pip install 'hagfish-jax[tasks]'"
        ) from err


class Split(NamedTuple):
    """Train/validation/test splits: float32 features, int32 labels ``0 .. C - 1``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# -- task ------------------------------------------------------------------------------


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; static configuration stays in closures.

    Attributes:
      params: model parameters.
      opt_state: ``inject_hyperparams`` state (holds learning_rate, weight_decay, b1, and
        ``optimizer`` when the task has two update rules).
      extra: :class:`hagfish_jax.ExtraHParams` holding dropout_rate and label_smoothing.
      step: optimizer steps taken, int32.
    """

    params: Any
    opt_state: Any
    extra: ExtraHParams
    step: jax.Array


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ClassificationTask(Task):
    """A :class:`hagfish_jax.Task` for classification, with what the runners need.

    Attributes:
      test_accuracy: ``state -> accuracy`` on the held-out split.
      logits: ``(params, x) -> logits`` without dropout (``predict`` is the same).
      steps_per_window: optimizer steps in one window.
      batch_size: the minibatch size.
      num_classes: labels are ``0 .. num_classes - 1``.
    """

    test_accuracy: Callable[[Any], jax.Array]
    logits: Callable[[Any, jax.Array], jax.Array]
    steps_per_window: int
    batch_size: int
    num_classes: int = 10


def make_task(
    data: Split,
    model: str = "mlp",
    batch_size: int = 64,
    steps_per_window: int | None = None,
    hidden: Sequence[int] = (64,),
    num_classes: int = 10,
    name: str = "classification",
    image_shape: Sequence[int] = (8, 8, 1),
    *,
    optimizers: Sequence[str] = ("adam",),
) -> ClassificationTask:
    """A classification task on flat features and integer labels.

    Args:
      data: the :class:`Split`.
      model: ``"mlp"`` or ``"cnn"`` (the CNN reshapes each example to ``image_shape``).
      batch_size: minibatch size; the last partial batch of an epoch is dropped.
      steps_per_window: optimizer steps per ``train_window``; default one epoch.
      hidden: hidden widths of the MLP (the CNN uses ``hidden[0]`` for its dense layer).
      num_classes: labels are ``0 .. num_classes - 1``.
      name: the task's name in records and reports.
      image_shape: height, width, channels, for the CNN.
      optimizers: the update rules the task may use, from :data:`OPTIMIZERS`.
        ``("adam",)`` is ``inject_hyperparams(optax.adamw)``; ``("sgd",)`` SGD with
        momentum ``b1`` and weight decay added to the gradient. Both,
        ``("adam", "sgd")``, put the two in one jitted program: the hyperparameter
        ``optimizer`` (0.0 adam, 1.0 sgd, whatever the order given here; the first
        named is the default) picks the update applied, and
        :func:`hagfish_jax.set_hparams` switches it without a retrace. Both moment
        sets are kept and updated every step, so the optimizer state holds three
        parameter-sized arrays instead of two, and each step computes both updates.

    Returns:
      A :class:`ClassificationTask`; its ``window_cost`` is batch size x epochs per
      window. With two optimizers its ``space`` and ``default_hparams`` include
      ``optimizer``.

    Raises:
      ValueError: unknown model, a batch size larger than the train split, or
        ``optimizers`` empty, with a repeated or an unknown name.

    >>> import jax
    >>> from hagfish_jax.tasks import classification, digits
    >>> task = classification.make_task(digits.load_digits_split(), hidden=(16,))
    >>> state = task.init(jax.random.key(0), task.default_hparams)
    >>> state, metrics = jax.jit(task.train_window)(state, jax.random.key(1))
    >>> sorted(jax.jit(task.evaluate)(state))
    ['score', 'train_f1', 'train_loss', 'train_score', 'val_f1', 'val_loss']
    """
    optimizers = _check_optimizers(optimizers)
    hidden = tuple(int(h) for h in hidden)
    num_classes = integer("make_task: num_classes", num_classes, 2)
    uniform_loss = math.log(num_classes)
    # With two classes an untrained network's loss is often above ln 2 already, so only
    # a loss far above it counts (see UNIFORM_LOSS).
    explode_loss = (1.25 if num_classes > 2 else 2.5) * uniform_loss
    if model == "mlp":
        net: nn.Module = MLP(hidden=hidden, num_classes=num_classes)
    elif model == "cnn":
        net = CNN(
            hidden=hidden[0] if hidden else 64,
            num_classes=num_classes,
            image_shape=tuple(int(d) for d in image_shape),
        )
    else:
        raise ValueError(f"make_task: model must be 'mlp' or 'cnn', got {model!r}")
    n_train = len(data.y_train)
    if not 1 <= batch_size <= n_train:
        raise ValueError(f"make_task: batch_size must be in [1, {n_train}], got {batch_size!r}")
    batches_per_epoch = n_train // batch_size
    steps = batches_per_epoch if steps_per_window is None else int(steps_per_window)
    if steps < 1:
        raise ValueError(f"make_task: steps_per_window must be >= 1, got {steps_per_window!r}")

    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_val, y_val = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)

    d = dict(default_hparams)
    tx, task_space = _make_tx(optimizers, d, space)

    def init(key, hparams) -> TrainState:
        params = net.init(key, x_train[:1], dropout_rate=0.0, deterministic=True)
        state = TrainState(
            params=params,
            opt_state=tx.init(params),
            extra=extra_hparams(**{k: d[k] for k in _EXTRA_HPARAMS}),
            step=jnp.zeros((), jnp.int32),
        )
        return set_hparams(state, {**d, **hparams})

    def loss_fn(params, x, y, smoothing, dropout_rate, key, deterministic):
        logits = net.apply(
            params, x, dropout_rate=dropout_rate, deterministic=deterministic, rngs={"dropout": key}
        )
        labels = optax.smooth_labels(jax.nn.one_hot(y, num_classes), smoothing)
        loss = optax.softmax_cross_entropy(logits, labels).mean()
        return loss, logits

    def train_window(state: TrainState, key) -> tuple[TrainState, dict]:
        shuffle_key, dropout_key = jax.random.split(key)
        batches = minibatches(shuffle_key, n_train, batch_size, steps)
        step_keys = jax.random.split(dropout_key, steps)
        hp = state.extra.hyperparams

        def step(state: TrainState, inputs):
            idx, k = inputs
            (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params,
                x_train[idx],
                y_train[idx],
                hp["label_smoothing"],
                hp["dropout_rate"],
                k,
                False,
            )
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            acc = jnp.mean(jnp.argmax(logits, -1) == y_train[idx])
            new = state.replace(
                params=optax.apply_updates(state.params, updates),
                opt_state=opt_state,
                step=state.step + 1,
            )
            return new, (loss, acc)

        state, (losses, accs) = jax.lax.scan(step, state, (batches, step_keys))
        loss = losses.mean()
        diverged = ~jnp.isfinite(loss) | (loss > explode_loss)
        if num_classes > 2:
            rising = loss > 1.05 * losses[0]
            diverged = diverged | ((loss > uniform_loss) & rising)
        return state, {"loss": loss, "accuracy": accs.mean(), "diverged": diverged}

    def _metrics(params, x, y):
        logits = net.apply(params, x, dropout_rate=0.0, deterministic=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        pred = jnp.argmax(logits, -1)
        return jnp.mean(pred == y), loss, macro_f1(pred, y, num_classes)

    def evaluate(state: TrainState) -> dict:
        val_acc, val_loss, val_f1 = _metrics(state.params, x_val, y_val)
        train_acc, train_loss, train_f1 = _metrics(state.params, x_train, y_train)
        return {
            "score": val_acc,
            "val_loss": val_loss,
            "val_f1": val_f1,
            "train_score": train_acc,
            "train_loss": train_loss,
            "train_f1": train_f1,
        }

    def test(state: TrainState) -> dict:
        acc, loss, f1 = _metrics(state.params, x_test, y_test)
        return {"score": acc, "loss": loss, "f1": f1}

    def test_accuracy(state: TrainState) -> jax.Array:
        return _metrics(state.params, x_test, y_test)[0]

    def logits(params, x) -> jax.Array:
        return net.apply(params, x, dropout_rate=0.0, deterministic=True)

    return ClassificationTask(
        init=init,
        train_window=train_window,
        evaluate=evaluate,
        space=task_space,
        default_hparams=dict(d),
        name=name,
        test=test,
        predict=logits,
        # a rollback restores the weights and optimizer; the step count is the clock
        restore=restore_only("params", "opt_state", "extra"),
        window_cost=batch_size * steps / batches_per_epoch,
        cost_unit="batch size x epochs",
        score_name="val_accuracy",
        data=data,
        test_accuracy=test_accuracy,
        logits=logits,
        steps_per_window=steps,
        batch_size=batch_size,
        num_classes=num_classes,
    )
