"""Every python block of the README runs as written, in order, in one namespace."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_top_shows_both_setup_commands():
    text = README.read_text()
    head = text[: text.index("## Quick start")]
    assert "hagfish demo" in head
    assert "python -m pytest" in head


@pytest.fixture(scope="module")
def executed():
    """Each block's namespace after running every block in order."""
    namespace: dict = {}
    after = []
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md block {i}", "exec"), namespace)
        after.append(dict(namespace))
    return after


def test_there_are_blocks_and_all_of_them_ran(executed):
    assert len(executed) == len(python_blocks()) >= 6


def test_quick_start_tunes(executed):
    ns = executed[0]
    losses = ns["losses"]
    assert float(losses[-1]) < 0.01 * float(losses[0])
    assert float(ns["lrs"][-1]) != 1e-3  # the tuner moved the learning rate


def test_task_program_population_loop_and_budget_blocks_did_their_work(executed):
    ns = executed[-1]
    assert ns["task"].name == "task" and float(ns["carry"].best.score) > -1.0
    assert ns["rows"]["score"].shape == (20, 8)
    assert ns["proposal"].parents.shape == (8,)
    result = ns["result"]
    assert result.population == 8 and result.windows >= 1 and result.best_score > -1.0
    assert ns["trainer"].best() is not None


def test_advisor_blocks_diagnose_and_talk_to_the_loopback_server(executed):
    ns = executed[-1]
    assert "overfitting" in ns["advice"].flags
    assert ns["advice"].hparams["weight_decay"] > ns["now"]["weight_decay"]
    assert ns["llm_advice"].hparams["learning_rate"] == 5e-4  # the scripted supervisor
    space = ns["hpo_space"]
    for name in ns["llm_advice"].hparams:
        assert name in space
    assert ns["searched"].notes[0].source == "my notes"


def test_learned_controller_block_trains_and_tunes(executed):
    ns = executed[-1]
    assert ns["trained"].controller.iterations == 2
    assert ns["ctl_rows"]["score"].shape == (4,)
    assert np.all(np.isfinite(np.asarray(ns["ctl_rows"]["learning_rate"])))


def test_stream_block_tunes_on_live_data(executed):
    live = executed[-1]["live"]
    assert live.reason == "stream ended" and live.windows == 20
    assert live.hparams["learning_rate"] > 1e-3  # the drift needs larger steps than the default


def test_distributed_block_runs_the_sharded_population(executed):
    ns = executed[-1]
    assert ns["dist_rows"]["score"].shape == (20, 8)
    assert ns["here"].processes == 1 and 0 <= int(ns["dist_best"].member) < 8


def test_mesh_loop_block_runs_over_the_mesh(executed):
    ns = executed[-1]
    assert ns["mesh_result"].reason == "budget" and ns["mesh_result"].windows == 10
