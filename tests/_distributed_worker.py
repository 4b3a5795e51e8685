"""One process of tests/test_distributed.py's multi-process population.

``python _distributed_worker.py ADDRESS PROCESSES PROCESS_ID OUT.json CHECKPOINTS``
joins the others with ``hj.distributed.initialize``, trains the population of
:func:`program` over every process's devices with :func:`hj.distributed.sharded` (built
in place, and again from a carry built whole on this host and placed), fetches the
results to this host and writes them as JSON. Then ``hj.Loop(..., mesh=...)`` tunes the
same population (:func:`loop_runs`): on process 0's own devices alone, then over every
process's devices, stopped by a callback after window 2 and resumed from the
checkpoints in the directory ``CHECKPOINTS``. The test imports :func:`program`, :func:`result`,
:func:`loop` and :func:`loop_result` to run the same things in one process.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj

N = 8
WINDOWS = 4
KEY = 7
SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.3))
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)


# numpy, not jnp: an array made at import would start JAX before the processes join
TARGET = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


def _init(key, hparams):
    w = jax.random.normal(key, (4,))
    return hj.set_hparams({"w": w, "opt": TX.init(w)}, hparams)


def _loss(w):
    return jnp.sum((w - TARGET) ** 2)


def _train_window(state, key):
    def sgd(carry, k):  # a noisy gradient: each member draws its own noise
        w, opt = carry
        g = jax.grad(_loss)(w) + 0.5 * jax.random.normal(k, w.shape)
        u, opt = TX.update(g, opt, w)
        return (optax.apply_updates(w, u), opt), None

    (w, opt), _ = jax.lax.scan(sgd, (state["w"], state["opt"]), jax.random.split(key, 3))
    return {"w": w, "opt": opt}, {"loss": _loss(w)}


def _evaluate(state):
    loss = _loss(state["w"])
    return {"score": -loss, "val_loss": loss}


def task():
    """A noisy quadratic bowl, elementwise arithmetic only (see test_distributed.py)."""
    return hj.Task(
        init=_init,
        train_window=_train_window,
        evaluate=_evaluate,
        space=SPACE,
        default_hparams={"learning_rate": 0.05},
    )


def program():
    """The population's tuned program: :func:`task` under PBT, exploiting every window."""
    return hj.program.build(task(), hj.pbt(SPACE, ready=1), population=N)


def hparams():
    return SPACE.sample(jax.random.key(KEY + 1), N)


def result(rows, best, carry_state):
    """What the test compares, as plain lists (float32 values are exact in JSON)."""
    as_list = lambda x: np.asarray(x).tolist()  # noqa: E731
    return {
        "score": as_list(rows["score"]),
        "learning_rate": as_list(rows["learning_rate"]),
        "parent": as_list(rows["parent"]),
        "rollback": as_list(rows["rollback"]),
        "best": {
            "score": float(best.score),
            "window": int(best.window),
            "member": int(best.member),
            "learning_rate": float(best.hparams["learning_rate"]),
            "w": as_list(best.state["w"]),
        },
        "final_w": as_list(carry_state["w"]),
    }


class Steady:
    """An advisor that always proposes the same learning rate, and counts its calls."""

    def __init__(self):
        self.calls = 0

    def advise(self, context):
        self.calls += 1
        return hj.Advice({"learning_rate": 0.05}, "steady")


def loop(task_, mesh=None, **options):
    """The Loop the test runs: :func:`task` under PBT, every window evaluated; the
    scores plateau at once, so the advisor is asked (at window 3)."""
    return hj.Loop(
        task=task_,
        tuner=hj.pbt(SPACE, ready=1),
        population=N,
        mesh=mesh,
        advisor=Steady(),
        backoff=hj.Backoff(plateau=1, noise=1e6, backoff=1.0),
        **options,
    )


def loop_result(r) -> dict:
    """What the test compares of a :class:`hj.LoopResult` (plain JSON values)."""
    as_list = lambda x: np.asarray(x).tolist()  # noqa: E731
    return {
        "history": r.history,
        "best": [r.best_score, r.best_window, r.best_member, r.hparams],
        "ended": [r.reason, r.windows, r.evaluations, r.rollbacks],
        "ensemble": r.ensemble,
        "best_w": as_list(hj.distributed.fetch(r.state["w"])),
        "final_w": as_list(hj.distributed.fetch(r.carry.state["w"])),
        "ensemble_w": [as_list(s["w"]) for s in r.ensemble_states],
        "rates": as_list(hj.distributed.fetch(hj.get_hparams(r.carry.state)["learning_rate"])),
    }


class _Watch(hj.Callback):
    """Compilations seen at each window's end; ``stop_at``: ask for a stop there, once."""

    def __init__(self, stop_at=None):
        from hagfish_jax.shell import compile_cache

        compile_cache.stats()  # starts counting
        self.seen, self.stop_at, self.advised = [], stop_at, []

    def on_hparams_update(self, loop, window, hparams, source):
        if source == "advisor":
            self.advised.append([window, hparams])

    def on_window_end(self, loop, window, metrics):
        from hagfish_jax.shell import compile_cache

        self.seen.append(compile_cache.stats().requested)
        if window == self.stop_at:
            self.stop_at = None
            loop.stop()


def _refused(task_) -> list[str]:
    """What the Loop says, before any work, of meshes it cannot use."""
    here = jax.local_devices()
    there = [d for d in jax.devices() if d.process_index != jax.process_index()]
    out = []
    for mesh, n in ((hj.distributed.make_mesh(here), 3), (hj.distributed.make_mesh(there), N)):
        try:
            hj.Loop(task=task_, population=n, mesh=mesh)
            out.append("accepted")
        except ValueError as err:
            out.append(str(err))
    return out


def plumbing(carry) -> dict:
    """What keeps a Loop's processes in step, given different values on each process:
    process 0's requests, reply and advice hold for all; the advisor is asked once."""
    from hagfish_jax.shell.loop.multihost import MeshLayout

    me, asked = jax.process_index(), []
    layout = MeshLayout(hj.distributed.make_mesh(), N)

    def ask():
        asked.append(me)
        return hj.Advice({"learning_rate": 0.05}), {"learning_rate": np.float32(0.05)}, None

    _, hp, error = layout.consult(ask)
    written = layout.set_hparams(carry, hp)
    rate = hj.get_hparams(written.state)["learning_rate"]
    return {
        "agreed": layout.agree(me == 1, None if me == 0 else 3),
        "shared": layout.share({"from": me, "text": "é" * 5000} if me == 0 else None),
        "consulted": [len(asked), hp, error],
        "failed": layout.consult(lambda: (None, {}, "advisor: RuntimeError: down"))[1:],
        "written": [hj.distributed.fetch(rate).tolist(), tuple(rate.sharding.spec)],
    }


def loop_runs(checkpoints: str) -> dict:
    """``hj.Loop`` with a mesh: on process 0 alone over its own two devices; then over
    every process's devices, stopped by a callback after window 2 and resumed from the
    checkpoints written in ``checkpoints``."""
    task_, out = task(), {}
    if jax.process_index() == 0:  # the other process goes on and waits for this one
        watch = _Watch()
        mesh = hj.distributed.make_mesh(jax.local_devices())
        r = loop(task_, mesh, callbacks=[watch]).run(
            key=jax.random.key(KEY), hparams=hparams(), max_windows=WINDOWS
        )
        out.update(local=loop_result(r), local_seen=watch.seen, refused=_refused(task_))
    watch = _Watch(stop_at=2)
    mesh = hj.distributed.make_mesh()
    again = loop(task_, mesh, callbacks=[watch], checkpoint_dir=checkpoints, save_every=1)
    stopped = again.run(key=jax.random.key(KEY), hparams=hparams(), max_windows=WINDOWS)
    out.update(stopped=[stopped.reason, stopped.windows], seen=watch.seen)
    resumed = again.run(key=jax.random.key(KEY), hparams=hparams(), max_windows=WINDOWS)
    out.update(loop=loop_result(resumed), checkpoints=sorted(os.listdir(checkpoints)))
    out.update(asked=again.advisor.calls, advised=watch.advised)
    return out


def main(address: str, processes: int, process_id: int, out: str, checkpoints: str) -> None:
    here = hj.distributed.initialize(address, processes, process_id, timeout=60)
    again = hj.distributed.initialize(address, processes, process_id)  # joined: a no-op
    try:
        hj.distributed.initialize(address, processes + 1, process_id)
        conflict = None
    except RuntimeError as err:
        conflict = str(err)
    run = hj.distributed.sharded(program())
    carry = run.init(jax.random.key(KEY), hparams())
    local = {s.device for s in carry.state["w"].addressable_shards}
    held = sum(s.data.shape[0] for s in carry.state["w"].addressable_shards)
    carry, rows = run.scan(carry, WINDOWS)
    rows, best, state = hj.distributed.fetch((rows, carry.best, carry.state))
    report = result(rows, best, state)
    # the same start built whole on this host, then placed: each device takes its part
    prog = program()
    placed = run.place(jax.jit(prog.init)(jax.random.key(KEY), hparams()))
    placed, rows = run.scan(placed, WINDOWS)
    report["placed"] = result(*hj.distributed.fetch((rows, placed.best, placed.state)))
    report["cluster"] = here._asdict()
    report["again"] = again == here
    report["conflict"] = conflict
    report["local_devices"] = len(local)
    report["members_here"] = held
    report["addressable"] = carry.state["w"].is_fully_addressable
    report["plumbing"] = plumbing(carry)
    report.update(loop_runs(checkpoints))
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
