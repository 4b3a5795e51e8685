"""The data a controller meets: generated tasks and scikit-learn's bundled sets.

:func:`synthetic_split` needs only numpy; the others need scikit-learn
(``pip install 'hagfish-jax[tasks]'``). None downloads anything.

:func:`training_splits` is the meta-training distribution of ``hagfish controller
train``: generated tasks of varied width, class count and noise, subsets of the
digits' classes, breast cancer and wine. ``hold_out`` drops named families, so a
benchmark can keep the tasks it reports out of meta-training; ``hagfish controller
train`` holds out digits, breast cancer and wine by default, the data of ``hagfish
controller eval``'s tasks (:data:`hagfish_jax.control.EVAL_FAMILIES`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..tasks.classification import Split, require_sklearn

__all__ = [
    "FAMILIES",
    "digits_subset_split",
    "standardized_split",
    "synthetic_split",
    "training_splits",
    "wine_split",
]

FAMILIES = ("synthetic", "digits", "breast_cancer", "wine")


def _split_rows(x, y, seed: int, val: float = 0.2, test: float = 0.2) -> Split:
    """A stratified train/val/test split with features standardised on train."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test, n_val = max(1, round(test * len(idx))), max(1, round(val * len(idx)))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    rows = {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}
    return standardized_split(
        Split(
            x[rows["train"]],
            y[rows["train"]],
            x[rows["val"]],
            y[rows["val"]],
            x[rows["test"]],
            y[rows["test"]],
        )
    )


def standardized_split(s: Split) -> Split:
    """``s`` with features scaled by the training split's mean and deviation."""
    mean, std = s.x_train.mean(0), s.x_train.std(0)
    std = np.where(std > 0, std, 1.0)

    def scale(a):
        return ((a - mean) / std).astype(np.float32)

    return Split(
        scale(s.x_train),
        s.y_train.astype(np.int32),
        scale(s.x_val),
        s.y_val.astype(np.int32),
        scale(s.x_test),
        s.y_test.astype(np.int32),
    )


def synthetic_split(
    seed: int = 0,
    n_features: int = 16,
    n_classes: int = 3,
    n_samples: int = 600,
    noise: float = 1.0,
) -> Split:
    """A generated task: two Gaussian clusters per class in an informative subspace,
    passed through a random ``tanh`` layer, plus noise features.

    >>> s = synthetic_split(0, n_features=8, n_classes=2, n_samples=100)
    >>> s.x_train.shape[1], sorted(set(s.y_train.tolist()))
    (8, [0, 1])
    """
    if n_classes < 2 or n_features < 2 or n_samples < 10 * n_classes:
        raise ValueError(
            "synthetic_split: need n_classes >= 2, n_features >= 2 and n_samples >= "
            f"10 * n_classes, got {n_classes}, {n_features}, {n_samples}"
        )
    rng = np.random.default_rng(seed)
    informative = max(2, n_features // 2)
    centres = rng.normal(0.0, 1.5, (n_classes, 2, informative))
    y = rng.integers(0, n_classes, n_samples)
    cluster = rng.integers(0, 2, n_samples)
    z = centres[y, cluster] + noise * rng.normal(size=(n_samples, informative))
    mix = rng.normal(0.0, 1.0 / np.sqrt(informative), (informative, informative))
    z = np.tanh(z @ mix) + 0.1 * z
    x = np.concatenate([z, rng.normal(size=(n_samples, n_features - informative))], axis=1)
    return _split_rows(x.astype(np.float32), y.astype(np.int32), seed)


def digits_subset_split(classes: Sequence[int], seed: int = 0) -> Split:
    """scikit-learn's digits restricted to ``classes`` (relabelled ``0 .. k - 1``)."""
    require_sklearn("digits_subset_split")
    from sklearn.datasets import load_digits

    classes = [int(c) for c in classes]
    if len(set(classes)) < 2 or not all(0 <= c <= 9 for c in classes):
        raise ValueError(f"digits_subset_split: need two or more distinct digits, got {classes}")
    x, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    relabel = {c: i for i, c in enumerate(classes)}
    y = np.asarray([relabel[int(v)] for v in y[keep]], np.int32)
    s = _split_rows((x[keep] / 16.0).astype(np.float32), y, seed)
    return s


def wine_split(seed: int = 0) -> Split:
    """scikit-learn's wine data (178 rows, 13 features, 3 classes), standardised."""
    require_sklearn("wine_split")
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    return _split_rows(x.astype(np.float32), y.astype(np.int32), seed)


def training_splits(seed: int = 0, hold_out: Sequence[str] = (), synthetic: int = 6) -> list[Split]:
    """The default meta-training distribution (see the module docstring).

    Args:
      seed: varies every generated task and every split.
      hold_out: families of :data:`FAMILIES` to leave out.
      synthetic: how many generated tasks.
    """
    unknown = sorted(set(hold_out) - set(FAMILIES))
    if unknown:
        raise ValueError(f"training_splits: unknown families {unknown}; known: {FAMILIES}")
    out: list[Split] = []
    rng = np.random.default_rng(seed)
    if "synthetic" not in hold_out:
        for i in range(synthetic):
            out.append(
                synthetic_split(
                    seed * 1000 + i,
                    n_features=int(rng.integers(6, 33)),
                    n_classes=int(rng.integers(2, 6)),
                    n_samples=int(rng.integers(300, 900)),
                    noise=float(rng.uniform(0.6, 1.6)),
                )
            )
    if "digits" not in hold_out:
        for classes in ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (1, 7), (3, 5, 8)):
            out.append(digits_subset_split(classes, seed))
    if "breast_cancer" not in hold_out:
        from ..tasks.breast_cancer import load_breast_cancer_split

        out.append(load_breast_cancer_split(seed))
    if "wine" not in hold_out:
        out.append(wine_split(seed))
    if not out:
        raise ValueError("training_splits: every family is held out")
    return out
