"""Tasks whose batch size, width and depth change inside jit: what a controller tunes.

:func:`make_task` builds a :class:`hagfish_jax.Task` over one data set or a *bank* of
several. A bank stacks the data sets, padded to a common shape (zero features, padded
rows never drawn, unused classes masked off), and each run draws the data set it
trains on from its ``init`` key. A vmapped population of runs over a bank trains on a
mix of data sets in one compiled program: that is how the controller meets many
tasks at once.

The hyperparameters are those of reference 003 (:data:`space`): learning rate, batch
size, dropout, number of layers and units per layer, all dynamic (the structural
three through the masks of :mod:`hagfish_jax.control.masked`). A window is
``steps_per_window`` Adam steps on minibatches drawn with replacement.

The text model is a bag of embeddings, not the LSTM reference 003 names: the corpus
(:mod:`hagfish_jax.tasks.text`) is short docstrings (median 9 tokens), where word order
adds little, and an LSTM's sequential scan over every step of hundreds of vmapped
runs would dominate the controller's meta-training on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core._checks import integer
from ..core.hparams import ExtraHParams, extra_hparams, set_hparams
from ..core.space import IntUniform, LogUniform, Space, Uniform
from ..core.task import Task, restore_only
from ..tasks.classification import Split
from .masked import TRUNKS, MaskedClassifier, MaskedMLP, Trunk

__all__ = ["ControlledState", "ControlledTask", "default_hparams", "make_task", "space"]

#: Reference 003's hyperparameters and ranges; every one changes inside jit.
space = Space(
    learning_rate=LogUniform(1e-5, 1e-1),
    batch_size=IntUniform(16, 128, dynamic=True),
    dropout_rate=Uniform(0.1, 0.7),
    num_layers=IntUniform(1, 4, dynamic=True),
    units=IntUniform(32, 256, dynamic=True),
)

#: Reference 003's starting values.
default_hparams: dict[str, float] = {
    "learning_rate": 1e-3,
    "batch_size": 32,
    "dropout_rate": 0.5,
    "num_layers": 2,
    "units": 64,
}

_EXTRA = ("batch_size", "dropout_rate", "num_layers", "units")

#: ``evaluate`` measures the training loss and accuracy on this many training rows
#: (the first ones; the rows are shuffled when split), not on all of them.
TRAIN_ROWS = 512


class ControlledState(flax.struct.PyTreeNode):
    """One run: weights, Adam state (learning rate injected), the other four
    hyperparameters, steps taken and the index of its data set in the bank."""

    params: Any
    opt_state: Any
    extra: ExtraHParams
    step: jax.Array
    data_id: jax.Array


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ControlledTask(Task):
    """A :class:`hagfish_jax.Task` with masked structure.

    Attributes:
      logits: ``(state, x) -> logits`` without dropout, at the state's structure.
      trunk: ``"mlp"``, ``"cnn"`` or ``"text"``.
      steps_per_window: Adam steps in one window.
      num_classes: the largest class count in the bank.
      datasets: how many data sets the bank holds.
    """

    logits: Callable[[Any, jax.Array], jax.Array]
    trunk: str
    steps_per_window: int
    num_classes: int
    datasets: int


def _stack(arrays: Sequence[np.ndarray], dtype) -> np.ndarray:
    """Zero-pad arrays of shape ``(n_i, d_i)`` (or ``(n_i,)``) to one stacked array."""
    rows = max(len(a) for a in arrays)
    tail = tuple(max(a.shape[j] for a in arrays) for j in range(1, arrays[0].ndim))
    out = np.zeros((len(arrays), rows) + tail, dtype)
    for i, a in enumerate(arrays):
        out[(i, slice(0, len(a))) + tuple(slice(0, s) for s in a.shape[1:])] = a
    return out


def _check_splits(splits: Sequence[Split], trunk: str) -> None:
    if not splits:
        raise ValueError("make_task: give at least one data split")
    for i, s in enumerate(splits):
        if not isinstance(s, Split):
            raise TypeError(f"make_task: split {i} is a {type(s).__name__}, not a Split")
        for part in ("train", "val", "test"):
            x, y = getattr(s, f"x_{part}"), getattr(s, f"y_{part}")
            if len(x) != len(y) or len(y) == 0:
                raise ValueError(
                    f"make_task: split {i} {part} has {len(x)} rows and {len(y)} labels"
                )
        if np.asarray(s.y_train).min() < 0:
            raise ValueError(f"make_task: split {i} has negative labels")
    dims = {np.asarray(s.x_train).ndim for s in splits}
    if dims != {2}:
        raise ValueError("make_task: features must be 2-d (rows x features or tokens)")
    if trunk == "cnn" and len({s.x_train.shape[1] for s in splits}) != 1:
        raise ValueError("make_task: the CNN needs every data set at one image size")


def make_task(
    splits: Split | Sequence[Split],
    trunk: str = "mlp",
    *,
    hparam_space: Space = space,
    defaults: Mapping[str, float] | None = None,
    steps_per_window: int = 20,
    image_shape: Sequence[int] = (8, 8, 1),
    vocab_size: int | None = None,
    name: str | None = None,
) -> ControlledTask:
    """A task over one data split or a bank of them, tuned over ``hparam_space``.

    Args:
      splits: a :class:`~hagfish_jax.tasks.classification.Split` or several.
      trunk: ``"mlp"`` (tabular), ``"cnn"`` (image; rows reshaped to
        ``image_shape``) or ``"text"`` (rows of int token ids, 0 = padding).
      hparam_space: must name ``learning_rate``, ``batch_size``, ``dropout_rate``,
        ``num_layers`` and ``units``; the largest network and batch come from its
        upper bounds. Default :data:`space` (reference 003's ranges).
      defaults: starting values (default :data:`default_hparams`, clipped to the
        space).
      steps_per_window: Adam steps per window.
      image_shape: height, width, channels for the CNN.
      vocab_size: embedding rows for text (default: the largest token id of any
        split + 1; a smaller one is refused).
      name: for records (default ``"<trunk>"`` or ``"<trunk>-bank"``).

    Raises:
      ValueError, TypeError: an unknown trunk, a space without the five names or with
        a structural one, empty or malformed splits, text token ids below 0 or not
        below ``vocab_size``.
    """
    if trunk not in TRUNKS:
        raise ValueError(f"make_task: trunk must be one of {TRUNKS}, got {trunk!r}")
    splits = [splits] if isinstance(splits, Split) else list(splits)
    _check_splits(splits, trunk)
    missing = sorted(set(_EXTRA + ("learning_rate",)) - set(hparam_space.names))
    if missing:
        raise ValueError(f"make_task: hparam_space lacks {missing}")
    fixed = sorted(set(hparam_space.names) & hparam_space.structural)
    if fixed:
        raise ValueError(f"make_task: {fixed} must be dynamic (IntUniform(..., dynamic=True))")
    steps = integer("make_task: steps_per_window", steps_per_window, 1)
    max_batch = int(hparam_space["batch_size"].high)
    max_units = int(hparam_space["units"].high)
    max_layers = int(hparam_space["num_layers"].high)
    classes = [int(max(np.max(s.y_train), np.max(s.y_val), np.max(s.y_test))) + 1 for s in splits]
    num_classes = max(max(classes), 2)
    text = trunk == "text"
    xdtype = np.int32 if text else np.float32
    if text:  # an id past the embedding's rows would read NaN: size it on every split
        ids = [np.asarray(getattr(s, f"x_{p}")) for s in splits for p in ("train", "val", "test")]
        low, high = min(int(a.min()) for a in ids), max(int(a.max()) for a in ids)
        if low < 0:
            raise ValueError(f"make_task: text token ids must be >= 0, got {low}")
        if vocab_size is None:
            vocab_size = high + 1
        elif high >= vocab_size:
            raise ValueError(
                f"make_task: vocab_size {vocab_size} is too small for token id {high} "
                "(ids of every split must be below it)"
            )
    net = MaskedClassifier(
        Trunk(trunk, tuple(int(d) for d in image_shape), vocab_size=int(vocab_size or 2)),
        MaskedMLP(max_layers, max_units, num_classes),
    )

    def part(p: str):
        x = jnp.asarray(_stack([np.asarray(getattr(s, f"x_{p}"), xdtype) for s in splits], xdtype))
        y = jnp.asarray(
            _stack([np.asarray(getattr(s, f"y_{p}"), np.int32) for s in splits], np.int32)
        )
        n = jnp.asarray([len(getattr(s, f"y_{p}")) for s in splits], jnp.int32)
        return x, y, n

    train, val, test_part = part("train"), part("val"), part("test")
    # the training loss a controller reads: the first TRAIN_ROWS rows (a fixed sample)
    train_eval = (
        train[0][:, :TRAIN_ROWS],
        train[1][:, :TRAIN_ROWS],
        jnp.minimum(train[2], TRAIN_ROWS),
    )
    class_counts = jnp.asarray(classes, jnp.int32)
    start = {**default_hparams, **(defaults or {})}
    clipped = hparam_space.clip({k: jnp.asarray(start[k], jnp.float32) for k in hparam_space.names})
    d = {k: float(v) for k, v in hparam_space.to_python(clipped).items()}
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=d["learning_rate"])
    n_sets = len(splits)

    def apply(params, x, hp, data_id, key=None):
        return net.apply(
            params,
            x,
            num_layers=hp["num_layers"],
            units=hp["units"],
            dropout_rate=hp["dropout_rate"],
            deterministic=key is None,
            class_mask=jnp.arange(num_classes) < class_counts[data_id],
            rngs=None if key is None else {"dropout": key},
        )

    def init(key, hparams) -> ControlledState:
        k_data, k_init = jax.random.split(key)
        data_id = jax.random.randint(k_data, (), 0, n_sets) if n_sets > 1 else jnp.int32(0)
        params = net.init(
            k_init,
            train[0][0, :1],
            num_layers=max_layers,
            units=max_units,
            dropout_rate=0.0,
            deterministic=True,
        )
        state = ControlledState(
            params=params,
            opt_state=tx.init(params),
            extra=extra_hparams(**{k: d[k] for k in _EXTRA}),
            step=jnp.zeros((), jnp.int32),
            data_id=jnp.asarray(data_id, jnp.int32),
        )
        return set_hparams(state, {**d, **hparams})

    def train_window(state: ControlledState, key) -> tuple[ControlledState, dict]:
        x_all, y_all, n_all = (a[state.data_id] for a in train)
        hp = state.extra.hyperparams
        weight = (jnp.arange(max_batch) < hp["batch_size"]) / jnp.maximum(hp["batch_size"], 1.0)

        def loss_fn(params, idx, k):
            logits = apply(params, x_all[idx], hp, state.data_id, k)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y_all[idx])
            return jnp.sum(weight * ce)

        def step(st: ControlledState, k):
            k_idx, k_drop = jax.random.split(k)
            idx = jax.random.randint(k_idx, (max_batch,), 0, n_all)
            loss, grads = jax.value_and_grad(loss_fn)(st.params, idx, k_drop)
            updates, opt_state = tx.update(grads, st.opt_state, st.params)
            st = st.replace(
                params=optax.apply_updates(st.params, updates),
                opt_state=opt_state,
                step=st.step + 1,
            )
            return st, loss

        state, losses = jax.lax.scan(step, state, jax.random.split(key, steps))
        loss = losses.mean()
        bound = 2.5 * jnp.log(class_counts[state.data_id].astype(jnp.float32))
        return state, {"loss": loss, "diverged": ~jnp.isfinite(loss) | (loss > bound)}

    def metrics(state: ControlledState, data) -> tuple[jax.Array, jax.Array, jax.Array]:
        x, y, n = (a[state.data_id] for a in data)
        logits = apply(state.params, x, state.extra.hyperparams, state.data_id)
        w = (jnp.arange(x.shape[0]) < n).astype(jnp.float32)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        pred = jnp.argmax(logits, -1)
        acc = jnp.sum(w * (pred == y)) / n
        loss = jnp.sum(w * ce) / n
        p = jax.nn.one_hot(pred, num_classes) * w[:, None]
        t = jax.nn.one_hot(y, num_classes) * w[:, None]
        tp, denom = jnp.sum(p * t, 0), jnp.sum(p, 0) + jnp.sum(t, 0)
        present = jnp.arange(num_classes) < class_counts[state.data_id]
        f1 = jnp.where(denom > 0, 2.0 * tp / jnp.maximum(denom, 1.0), 1.0)
        return acc, loss, jnp.sum(jnp.where(present, f1, 0.0)) / jnp.sum(present)

    def evaluate(state: ControlledState) -> dict:
        acc, loss, f1 = metrics(state, val)
        train_acc, train_loss, _ = metrics(state, train_eval)
        return {
            "score": acc,
            "val_loss": loss,
            "val_f1": f1,
            "train_score": train_acc,
            "train_loss": train_loss,
        }

    def test(state: ControlledState) -> dict:
        acc, loss, f1 = metrics(state, test_part)
        return {"score": acc, "loss": loss, "f1": f1}

    def logits(state: ControlledState, x) -> jax.Array:
        return apply(state.params, x, state.extra.hyperparams, state.data_id)

    return ControlledTask(
        init=init,
        train_window=train_window,
        evaluate=evaluate,
        space=hparam_space,
        default_hparams=d,
        name=name or (trunk if n_sets == 1 else f"{trunk}-bank"),
        test=test,
        restore=restore_only("params", "opt_state", "extra"),
        window_cost=float(d["batch_size"] * steps),
        cost_unit="examples",
        score_name="val_accuracy",
        data=splits,
        logits=logits,
        trunk=trunk,
        steps_per_window=steps,
        num_classes=num_classes,
        datasets=n_sets,
    )
