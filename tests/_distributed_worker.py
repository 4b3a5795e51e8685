"""One process of tests/test_distributed.py's multi-process population.

``python _distributed_worker.py ADDRESS PROCESSES PROCESS_ID OUT.json`` joins the others
with ``hj.distributed.initialize``, trains the population of :func:`program` over every
process's devices with :func:`hj.distributed.sharded` (built in place, and again from a
carry built whole on this host and placed), fetches the results to this host and writes
them as JSON. The test imports :func:`program` and :func:`result` to run the
same thing in one process.
"""

from __future__ import annotations

import json
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


def main(address: str, processes: int, process_id: int, out: str) -> None:
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
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
