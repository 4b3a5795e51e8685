"""scikit-learn's breast cancer data (569 tumours, 30 features, benign/malignant).

A small tabular task for budget planning: a flax MLP trained with the same pure,
jittable functions as :mod:`hagfish_jax.tasks.classification` (``init``, ``train_window``,
``evaluate`` with accuracy, loss and F1, ``test_accuracy``), with two output classes.

Two split protocols:

* ``"honest"`` (default): stratified train / validation / test (60 / 20 / 20 by
  default) with a fixed seed; features standardised with the mean and standard
  deviation of the *training* split only; select on validation, report test.
* ``"reference"``: one stratified 80 / 20 split with raw (unscaled) features, and
  the 20% split serves as both validation and test, i.e. selection happens on the
  reported split. It reproduces a common but optimistic protocol, for comparison
  with numbers published that way; do not use it to choose models.

scikit-learn is an optional extra: ``pip install 'hagfish-jax[tasks]'``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .classification import ClassificationTask, Split, require_sklearn
from .classification import make_task as _make_classification_task

__all__ = ["PROTOCOLS", "load_breast_cancer_split", "make_task"]

PROTOCOLS = ("honest", "reference")


def load_breast_cancer_split(
    seed: int = 0,
    protocol: str = "honest",
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Split:
    """Split the bundled breast cancer data; see the module docstring for the protocols.

    Args:
      seed: seed of the (stratified) splits.
      protocol: ``"honest"`` or ``"reference"``.
      val_fraction, test_fraction: shares of all rows (``"honest"`` only; the
        reference protocol always holds out 20%).

    Returns:
      Splits with ``x_*`` float32 of shape ``(n, 30)`` and ``y_*`` int32 (1 = benign).

    Raises:
      ImportError: scikit-learn is not installed.
      ValueError: an unknown protocol or fractions outside their range.

    >>> data = load_breast_cancer_split(seed=0)
    >>> data.x_train.shape, data.x_val.shape, data.x_test.shape
    ((341, 30), (114, 30), (114, 30))
    >>> bool(abs(data.x_train.mean()) < 1e-5)  # standardised on the training split
    True
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"breast_cancer: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0):
        raise ValueError(
            "breast_cancer: val_fraction and test_fraction must be in (0, 1), got "
            f"{val_fraction!r} and {test_fraction!r}"
        )
    if val_fraction + test_fraction >= 0.9:
        raise ValueError(
            "breast_cancer: val_fraction + test_fraction must leave at least 10% to train, "
            f"got {val_fraction + test_fraction!r}"
        )
    require_sklearn("the breast cancer task")
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float64)
    y = y.astype(np.int32)
    if protocol == "reference":
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=0.2, random_state=seed, stratify=y
        )
        f32 = np.float32
        return Split(x_tr.astype(f32), y_tr, x_te.astype(f32), y_te, x_te.astype(f32), y_te)
    x_rest, x_te, y_rest, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_tr, x_va, y_tr, y_va = train_test_split(
        x_rest,
        y_rest,
        test_size=val_fraction / (1.0 - test_fraction),
        random_state=seed + 1,
        stratify=y_rest,
    )
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def scale(a):
        return ((a - mean) / std).astype(np.float32)

    return Split(scale(x_tr), y_tr, scale(x_va), y_va, scale(x_te), y_te)


def make_task(
    data: Split | None = None,
    batch_size: int = 32,
    hidden: Sequence[int] = (32,),
    steps_per_window: int | None = None,
    seed: int = 0,
    model: str = "mlp",
) -> ClassificationTask:
    """The breast cancer MLP: ``hidden`` ReLU layers with dropout, two logits.

    A window is one epoch by default (``len(train) // batch_size`` steps). The
    learning rate, weight decay, b1, dropout and label smoothing are tunable exactly
    as on digits (``task.space``).

    >>> import jax
    >>> task = make_task(load_breast_cancer_split(), batch_size=64, hidden=(8,))
    >>> state = task.init(jax.random.key(0), task.default_hparams)
    >>> state, _ = jax.jit(task.train_window)(state, jax.random.key(1))
    >>> 0.5 < float(jax.jit(task.evaluate)(state)["score"]) <= 1.0
    True
    """
    if model != "mlp":
        raise ValueError(f"the breast_cancer task has an MLP only, got model={model!r}")
    return _make_classification_task(
        load_breast_cancer_split(seed) if data is None else data,
        model="mlp",
        batch_size=batch_size,
        steps_per_window=steps_per_window,
        hidden=hidden,
        num_classes=2,
        name="breast_cancer",
    )
