"""Validation rules of from_config: ranges, integer options, guard and schedule."""

from __future__ import annotations

import pytest

import hagfish_jax as hj
from hagfish_jax.shell.config import _INT_LIMIT

BASE = {"space": {"lr": [1e-4, 1e-1]}, "tuner": {"strategy": "finite_difference"}}


def test_an_integer_log_range_is_refused():
    with pytest.raises(ValueError, match="space.x: 'int' and 'log' cannot be combined"):
        hj.from_config({**BASE, "space": {"x": {"low": 1, "high": 100, "int": True,
                                                 "log": True}}})


def test_integer_guard_options_accept_both_ends_of_their_range():
    config = hj.from_config({**BASE, "guard": {"cooldown": 0, "smoothing": 1,
                                               "patience": _INT_LIMIT}})
    guard = dict(config.guard)
    assert guard["cooldown"] == 0 and guard["smoothing"] == 1
    assert guard["patience"] == _INT_LIMIT
    with pytest.raises(ValueError, match="guard.patience"):
        hj.from_config({**BASE, "guard": {"patience": _INT_LIMIT + 1}})


def test_an_integer_option_with_a_fraction_is_refused():
    with pytest.raises(ValueError, match="guard.patience: must be an integer"):
        hj.from_config({**BASE, "guard": {"patience": 2.5}})


def test_max_delta_one_and_tolerance_zero_are_accepted():
    config = hj.from_config({**BASE, "guard": {"max_delta": 1.0, "tolerance": 0.0}})
    assert dict(config.guard)["max_delta"] == 1.0
    assert dict(config.guard)["tolerance"] == 0.0


def test_a_shrink_factor_of_one_is_refused():
    with pytest.raises(ValueError, match=r"guard.shrink.lr: must be in \(0, 1\)"):
        hj.from_config({**BASE, "guard": {"shrink": {"lr": 1.0}}})


def test_a_tuner_option_given_inline_and_under_options_is_refused():
    tuner = {"strategy": "finite_difference", "step": 0.05, "options": {"step": 0.1}}
    with pytest.raises(ValueError, match="tuner.step: given both inline and under"):
        hj.from_config({**BASE, "tuner": tuner})


def test_an_integer_tuner_option_may_be_zero():
    config = hj.from_config({"space": {"learning_rate": [1e-4, 1e-1]},
                             "tuner": {"strategy": "plateau", "cooldown": 0}})
    assert dict(config.options)["cooldown"] == 0


def test_a_population_strategy_refuses_a_schedule():
    with pytest.raises(ValueError, match="guard/schedule: pbt tunes a population"):
        hj.from_config({**BASE, "tuner": {"strategy": "pbt"}, "schedule": {"tune_every": 2}})


def test_a_schedule_without_the_guard_is_refused():
    with pytest.raises(ValueError, match="schedule: needs the guard"):
        hj.from_config({**BASE, "guard": False, "schedule": {"tune_every": 2}})


def test_a_dimensions_own_error_names_its_key_once():
    with pytest.raises(ValueError) as err:
        hj.from_config({**BASE, "space": {"x": {"low": 1, "high": 2, "log": "yes"}}})
    assert str(err.value).startswith("space.x.log:")
    assert str(err.value).count("space.x") == 1


def test_space_names_must_be_identifiers():
    with pytest.raises(ValueError, match="space: names must be identifiers"):
        hj.from_config({**BASE, "space": {"my-lr": [1e-4, 1e-1]}})


def test_a_boolean_bound_is_not_a_number():
    with pytest.raises(ValueError, match="space.x.low: expected a number, got True"):
        hj.from_config({**BASE, "space": {"x": {"low": True, "high": 5}}})


def test_a_choice_refuses_range_keys_beside_it():
    with pytest.raises(ValueError, match=r"space.x: unknown key\(s\) \['low'\] beside 'choice'"):
        hj.from_config({**BASE, "space": {"x": {"choice": [1, 2], "low": 1}}})
