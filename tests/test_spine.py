"""The layout's promises: the core imports no shell, flax.linen or orbax; the Task
protocol; the registry is the one place a task is added; old names keep working."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax import tasks


def test_import_loads_the_core_only():
    code = textwrap.dedent(
        """
        import sys
        import hagfish_jax as hj
        heavy = [m for m in ("flax.linen", "orbax.checkpoint", "hagfish_jax.shell.cli",
                             "hagfish_jax.shell.loop", "hagfish_jax.tasks.digits",
                             "sklearn", "matplotlib") if m in sys.modules]
        assert not heavy, heavy
        hj.Loop, hj.records.RunRecords  # the shell loads on first use
        assert "hagfish_jax.shell.loop" in sys.modules
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_the_core_never_imports_the_shell_or_the_tasks():
    import pathlib

    core = pathlib.Path(hj.__file__).parent / "core"
    for path in core.rglob("*.py"):
        text = path.read_text()
        for layer in ("shell", "tasks", "rl", "flax", "orbax"):
            assert f"from ..{layer}" not in text and f"import {layer}" not in text, (path, layer)
            assert f"from ...{layer}" not in text, (path, layer)


def test_old_names_keep_working():
    for name in ("Loop", "LoopResult", "Backoff", "Callback", "Advice", "MetaController",
                 "RegimeDetector", "AdaptiveTrainer", "from_config", "TuningConfig"):
        assert getattr(hj, name) is not None
    assert hj.loop.Loop is hj.Loop and hj.budget.AdaptiveTrainer is hj.AdaptiveTrainer
    from hagfish_jax import gp, population, snapshot  # noqa: F401
    from hagfish_jax.tasks import digits

    assert digits.DigitsTask is tasks.classification.ClassificationTask
    assert sorted(dir(hj))[:3] == sorted(hj.__all__)[:3]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hj.nope  # noqa: B018


def _bowl(seed: int = 0) -> hj.Task:
    space = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)

    def init(key, hparams):
        w = jax.random.normal(key, (2,))
        return hj.set_hparams({"w": w, "opt": tx.init(w)}, hparams)

    def train_window(state, key):
        u, opt = tx.update(2 * state["w"], state["opt"], state["w"])
        return {"w": state["w"] + u, "opt": opt}, {}

    return hj.Task(init=init, train_window=train_window, space=space, name="bowl",
                   evaluate=lambda s: {"score": -jnp.sum(s["w"] ** 2)},
                   default_hparams={"learning_rate": 0.1})


def test_adding_a_task_touches_one_registry(tmp_path, monkeypatch, capsys):
    module = types.ModuleType("my_tasks.bowl")  # the user's own module
    module.make_task = _bowl
    monkeypatch.setitem(sys.modules, "my_tasks", types.ModuleType("my_tasks"))
    monkeypatch.setitem(sys.modules, "my_tasks.bowl", module)
    monkeypatch.setitem(tasks.REGISTRY, "bowl", tasks.TaskEntry("my_tasks.bowl", "a bowl",
                                                                population=4))
    from hagfish_jax import cli

    assert cli.main(["demo", "--task", "bowl", "--windows", "3", "--out", str(tmp_path),
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 members x 3 windows" in out and "best score" in out
    run = hj.records.read_run(tmp_path)
    assert run["summary"]["task"] == "bowl" and len(run["rows"]) == 4
    with pytest.raises(ValueError, match="takes \\['seed'\\], not \\['hidden'\\]"):
        tasks.make("bowl", hidden=(3,))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        tasks.make("nope")


def test_task_protocol_checks_its_shape():
    task = _bowl()
    assert hj.core.task.check_task(task) is task
    with pytest.raises(TypeError, match="has no evaluate"):
        hj.core.task.check_task(types.SimpleNamespace(init=1, train_window=1, space=None,
                                                      default_hparams={}))
    with pytest.raises(TypeError, match="init must be callable"):
        task.replace(init=3)
    with pytest.raises(ValueError, match="no value for \\['learning_rate'\\]"):
        task.replace(default_hparams={})
    with pytest.raises(TypeError, match="hagfish_jax.Space"):
        task.replace(space={"learning_rate": (0, 1)})
