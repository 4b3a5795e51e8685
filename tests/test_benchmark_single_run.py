"""Smoke test of benchmarks/single_run.py and benchmarks/pbt_defaults.py (small budgets)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import hagfish_jax as hj

pytest.importorskip("sklearn")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def mods():
    sys.path.insert(0, str(BENCHMARKS))
    before = set(sys.modules)
    try:
        yield {n: importlib.import_module(n) for n in ("single_run", "pbt_defaults")}
    finally:
        sys.path.remove(str(BENCHMARKS))
        for name in set(sys.modules) - before:
            if str(BENCHMARKS) in str(getattr(sys.modules[name], "__file__", "") or ""):
                del sys.modules[name]


def test_every_method_spends_the_budget_and_reports_the_selected_model(mods, monkeypatch):
    single = mods["single_run"]
    monkeypatch.setitem(single.BENCH, "breast_cancer", single.Bench(2, 2, 1, "test acc %"))
    monkeypatch.setitem(single.BENCH, "toy", single.Bench(2, 3, 1, "on target %"))
    acc, wall = single.run("breast_cancer", "pbt", 0)
    assert 0.0 <= acc <= 100.0 and wall > 0
    # the toy's single run gets K times the steps per window, not more windows
    assert single.make_task("toy", 0, steps_factor=2).name == "toy"
    for method in ("random", "guard(fd)"):
        on_target, _ = single.run("toy", method, 0)
        assert 0.0 <= on_target <= 100.0


def test_pbt_defaults_parses_ready_and_runs_a_development_task(mods):
    dev = mods["pbt_defaults"]
    assert dev.ready_value("2") == 2 and dev.ready_value("0.15") == 0.15
    cfg = {"r": 2, "fraction": 0.25, "resample": 0.25, "perturb": (0.8, 1.25)}
    assert dev.label(cfg).startswith("r=2w frac=0.25")
    task = dev.dev_task("dev_stream", 100)
    share, _ = dev.run(task, hj.pbt(task.space, ready=2), 2, 4, 100)
    assert 0.0 <= share <= 1.0
    with pytest.raises(ValueError):
        dev.dev_task("nope", 0)
