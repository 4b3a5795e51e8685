"""The scikit-learn digits task: 8x8 handwritten digits, ten classes, no download.

A small, fast task for demos, tests and benchmarks: :func:`load_digits_split` splits
the bundled images, :func:`make_task` builds a
:class:`~hagfish_jax.tasks.classification.ClassificationTask` (an MLP or a small CNN)
on them. The models, training and metrics live in
:mod:`hagfish_jax.tasks.classification`; the names below are re-exported from there.

scikit-learn is an optional extra, needed only by :func:`load_digits_split`:
``pip install 'hagfish-jax[tasks]'``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .classification import (
    CNN,
    MLP,
    UNIFORM_LOSS,
    ClassificationTask,
    Split,
    TrainState,
    default_hparams,
    dropout,
    macro_f1,
    minibatches,
    require_sklearn,
    space,
)

__all__ = [
    "CNN",
    "MLP",
    "UNIFORM_LOSS",
    "DigitsData",
    "DigitsTask",
    "TrainState",
    "default_hparams",
    "dropout",
    "load_digits_split",
    "macro_f1",
    "make_task",
    "minibatches",
    "space",
]

#: Earlier names of the generic types, kept as aliases.
DigitsData = Split
DigitsTask = ClassificationTask


def load_digits_split(
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    train_fraction: float = 1.0,
) -> Split:
    """Split scikit-learn's bundled digits (1797 images) into train/val/test.

    Every split is stratified by class and determined by ``seed``.

    Args:
      seed: seed of the splits.
      val_fraction: share of all images used for validation.
      test_fraction: share of all images held out for the test.
      train_fraction: keep this stratified share of the remaining train split
        (``< 1`` makes harder, data-poor variants).

    Returns:
      A :class:`~hagfish_jax.tasks.classification.Split` with ``x_*`` of shape ``(n, 64)``
      float32 and ``y_*`` int32.

    Raises:
      ImportError: scikit-learn is not installed.
      ValueError: fractions outside their range.

    >>> data = load_digits_split(seed=0)
    >>> data.x_train.shape, data.x_val.shape, data.x_test.shape
    ((1079, 64), (359, 64), (359, 64))
    """
    require_sklearn("the digits task")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0):
        raise ValueError(
            "load_digits_split: val_fraction and test_fraction must be in (0, 1), got "
            f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}"
        )
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            "load_digits_split: val_fraction + test_fraction must be < 1, got "
            f"{val_fraction + test_fraction!r}"
        )
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(
            f"load_digits_split: train_fraction must be in (0, 1], got {train_fraction!r}"
        )

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int32)
    n = len(y)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=n_test, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=n_val, stratify=y_rest, random_state=seed + 1
    )
    if train_fraction < 1.0:
        x_train, _, y_train, _ = train_test_split(
            x_train, y_train, train_size=train_fraction, stratify=y_train, random_state=seed + 2
        )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)


def make_task(
    data: Split | None = None,
    model: str = "mlp",
    batch_size: int = 64,
    steps_per_window: int | None = None,
    hidden: Sequence[int] = (64,),
    seed: int = 0,
) -> ClassificationTask:
    """The digits task: an MLP or a small CNN on :func:`load_digits_split` (``data``, or
    the split of ``seed``). A window is one epoch unless ``steps_per_window`` says
    otherwise; see :func:`hagfish_jax.tasks.classification.make_task`.

    >>> import jax
    >>> task = make_task(load_digits_split(), hidden=(16,))
    >>> state = task.init(jax.random.key(0), task.default_hparams)
    >>> state, metrics = jax.jit(task.train_window)(state, jax.random.key(1))
    >>> task.name, sorted(jax.jit(task.evaluate)(state))[:2]
    ('digits', ['score', 'train_f1'])
    """
    from .classification import make_task as build

    return build(
        load_digits_split(seed) if data is None else data,
        model=model,
        batch_size=batch_size,
        steps_per_window=steps_per_window,
        hidden=hidden,
        num_classes=10,
        name="digits",
    )
