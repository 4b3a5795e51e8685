"""The controller suite's scoring: the test numbers belong to the model that was scored."""

from __future__ import annotations

import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax.control import suite
from hagfish_jax.control.data import synthetic_split
from hagfish_jax.control.tasks import make_task


def test_a_members_test_accuracy_is_that_of_the_model_its_last_score_measured():
    # with the test split equal to the validation split, each member's test accuracy
    # must equal its last validation score, although the last tune step of PBT
    # (ready=1, a quarter replaced) copies members and writes new hyperparameters
    split = synthetic_split(3, n_features=8, n_classes=3, n_samples=240)
    task = make_task(split._replace(x_test=split.x_val, y_test=split.y_val), steps_per_window=2)
    members = 8
    (res,) = suite.evaluate_tuner(
        task,
        hj.pbt(task.space, ready=1, fraction=0.25),
        windows=3,
        members=members,
        hparams=lambda key: task.space.sample(key, members),
    )
    np.testing.assert_array_equal(res["test_accuracy"], res["val_score"])


def test_evaluate_tuner_refuses_a_run_without_windows():
    task = make_task(synthetic_split(0, n_features=4, n_classes=2, n_samples=60))
    with pytest.raises(ValueError, match="windows must be an integer >= 1"):
        suite.evaluate_tuner(task, hj.fixed(), windows=0)
