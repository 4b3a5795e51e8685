"""The host-side value helpers of the Loop's steering: clamp, device_values,
python_values and floats."""

from __future__ import annotations

import numpy as np

import hagfish_jax as hj
from hagfish_jax.shell.loop.steering import clamp, device_values, floats, python_values

SPACE = hj.Space(
    learning_rate=hj.LogUniform(1e-3, 1.0),
    optimizer=hj.Choice(["adam", "sgd"]),
    batch_size=hj.Choice([32, 64]),
)
KNOWN = {"learning_rate": 0.1, "optimizer": 0.0, "batch_size": 32.0, "other": 1.0}


def test_clamp_drops_booleans_texts_and_bytes_even_when_they_convert_to_numbers():
    for v in (True, np.True_, "0.5", b"0.5"):
        assert clamp({"learning_rate": v}, KNOWN, SPACE) == {}
        assert clamp({"other": v}, KNOWN, None) == {}


def test_clamp_drops_non_finite_values():
    for v in (float("nan"), float("inf"), -float("inf")):
        assert clamp({"other": v}, KNOWN, None) == {}
        assert clamp({"learning_rate": v}, KNOWN, SPACE) == {}


def test_clamp_drops_a_dimension_that_is_not_dynamic():
    space = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0, dynamic=False))
    assert clamp({"learning_rate": 0.5, "other": 2.0}, KNOWN, space) == {"other": 2.0}


def test_device_values_leave_an_unknown_choice_and_numeric_choices_as_they_are():
    out = device_values({"optimizer": "rmsprop", "batch_size": 64}, SPACE)
    assert out == {"optimizer": "rmsprop", "batch_size": 64}
    assert device_values({"optimizer": "sgd"}, SPACE) == {"optimizer": 1}
    assert clamp({"optimizer": out["optimizer"]}, KNOWN, SPACE) == {}


def test_python_values_name_only_non_numeric_choices():
    assert python_values({"optimizer": 1.0, "batch_size": 64.0, "other": 2.0}, SPACE) == {
        "optimizer": "sgd", "batch_size": 64.0, "other": 2.0}


def test_floats_take_the_first_member_of_a_population_value():
    assert floats({"a": np.array([1.0, 2.0, 3.0]), "b": np.float32(0.5)}) == {"a": 1.0, "b": 0.5}
