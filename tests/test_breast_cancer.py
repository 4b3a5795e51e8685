"""The breast cancer task: splits, scaling on the training split only, training."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hagfish_jax.tasks import breast_cancer

pytest.importorskip("sklearn")


def test_honest_split_is_stratified_disjoint_and_scaled_on_train_only():
    data = breast_cancer.load_breast_cancer_split(seed=3)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 569
    np.testing.assert_allclose(data.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(0), 1.0, atol=1e-4)
    # validation and test carry the training statistics, so they are not exactly 0/1
    assert np.abs(data.x_test.mean(0)).max() > 1e-3
    rows = {tuple(np.round(r, 5)) for r in data.x_train}
    assert not rows & {tuple(np.round(r, 5)) for r in data.x_test}
    shares = [np.mean(y) for y in (data.y_train, data.y_val, data.y_test)]
    assert max(shares) - min(shares) < 0.02  # stratified: about 63% benign each
    again = breast_cancer.load_breast_cancer_split(seed=3)
    np.testing.assert_array_equal(again.x_val, data.x_val)


def test_reference_protocol_selects_on_the_reported_split_with_raw_features():
    data = breast_cancer.load_breast_cancer_split(seed=0, protocol="reference")
    assert (len(data.y_train), len(data.y_test)) == (455, 114)
    np.testing.assert_array_equal(data.x_val, data.x_test)
    assert data.x_train.max() > 100  # raw features (areas in the thousands)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"protocol": "kfold"}, "protocol"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.45}, "10%"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, word):
    with pytest.raises(ValueError, match=word):
        breast_cancer.load_breast_cancer_split(**kwargs)


def test_mlp_learns_and_reports_f1():
    task = breast_cancer.make_task(breast_cancer.load_breast_cancer_split(), hidden=(16,))
    state = task.init(jax.random.key(0), task.default_hparams)
    window = jax.jit(task.train_window)
    for i in range(5):
        state, metrics = window(state, jax.random.key(i))
    ev = jax.jit(task.evaluate)(state)
    assert float(ev["score"]) > 0.9 and float(ev["val_f1"]) > 0.85
    assert not bool(metrics["diverged"])
