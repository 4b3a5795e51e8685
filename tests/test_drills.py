"""The kill -9 drill: a Loop with checkpoints and run records is killed at a random
window, resumed, and compared with an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

RUN = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, optax
    import hagfish_jax as hj

    directory = sys.argv[1]
    space = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.5))
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    target = jnp.linspace(-1.0, 1.0, 4)

    def init(key, hp):
        w = jax.random.normal(key, (4,))
        return hj.set_hparams({"w": w, "opt": tx.init(w)}, hp)

    def train_window(s, key):
        g = jax.grad(lambda w: jnp.sum((w - target) ** 2))(s["w"])
        g = g + 0.1 * jax.random.normal(key, (4,))
        u, opt = tx.update(g, s["opt"], s["w"])
        return {"w": s["w"] + u, "opt": opt}, {"loss": jnp.sum((s["w"] - target) ** 2)}

    task = hj.Task(init=init, train_window=train_window, space=space, name="bowl",
                   evaluate=lambda s: {"score": -jnp.sum((s["w"] - target) ** 2)},
                   default_hparams={"learning_rate": 0.1})

    class Say(hj.Callback):
        def on_window_end(self, loop, window, metrics):
            print(window, flush=True)

    records = hj.records.RunRecords(directory + "/records", meta={"task": "bowl"})
    loop = hj.Loop(task=task, tuner=hj.pbt(space), population=4, save_every=1,
                   checkpoint_dir=directory + "/ckpt",
                   backoff=hj.Backoff(plateau=100, dormant=200, backoff=1.0),
                   callbacks=[Say(), hj.loop.RecordRun(records)])
    r = loop.run(None, jax.random.key(3), 24, hparams=space.sample(jax.random.key(4), 4))
    print("RESULT " + json.dumps({"best_score": r.best_score, "best_window": r.best_window,
                                 "w": jax.device_get(r.carry.state["w"]).tolist()}), flush=True)
    """
)


def start(directory):
    return subprocess.Popen([sys.executable, "-c", RUN, str(directory)],
                            stdout=subprocess.PIPE, text=True)


def finish(proc):
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.timeout(600)
def test_kill_9_at_a_random_window_then_resume_equals_the_uninterrupted_run(tmp_path):
    from hagfish_jax.shell.loop import Checkpoints
    from hagfish_jax.shell.records import read_run

    whole = finish(start(tmp_path / "whole"))
    kill_at = int(np.random.default_rng().integers(3, 20))
    proc = start(tmp_path / "killed")
    while int(proc.stdout.readline()) < kill_at:
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = finish(start(tmp_path / "killed"))
    assert resumed["best_window"] == whole["best_window"], kill_at
    assert resumed["best_score"] == pytest.approx(whole["best_score"], rel=1e-6), kill_at
    np.testing.assert_allclose(resumed["w"], whole["w"], rtol=1e-6)
    best = [Checkpoints(tmp_path / d / "ckpt").best for d in ("whole", "killed")]
    assert best[0]["window"] == best[1]["window"] and best[0]["score"] == best[1]["score"]
    for member, rows in read_run(tmp_path / "killed" / "records")["rows"].items():
        windows = [r["window"] for r in rows]
        assert windows == sorted(set(windows)), member  # nothing twice
    assert read_run(tmp_path / "killed" / "records")["rows"].keys() == \
        read_run(tmp_path / "whole" / "records")["rows"].keys()
