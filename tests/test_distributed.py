"""hj.distributed: one population over two processes (gloo on 127.0.0.1) equals the
same population trained by one process on one device, bit for bit, with the same key;
and so does ``hj.Loop(..., mesh=...)`` driving it: over the two devices of one process,
and over two processes, stopped by a callback on process 0 and resumed from the
checkpoints both processes wrote.

Two worker processes (``tests/_distributed_worker.py``) with two CPU devices each (four
devices, two members apiece) train a PBT population of 8 while this process trains it
with a plain ``jax.jit`` on its one device. The task's arithmetic is elementwise, which
XLA compiles the same way for any number of members per device; a member's matmul is
compiled differently for 2 members per device than for 8 on one (its values then agree
to the last bits only, with or without a second process: see the README section).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from _distributed_worker import KEY, WINDOWS, hparams, loop, loop_result, program, result, task

import hagfish_jax as hj
from hagfish_jax.core.sharding import carry_shardings, sharded, shardings

WORKER = Path(__file__).with_name("_distributed_worker.py")
WAIT = 120  # seconds for all the workers together
LR = float(np.float32(0.05))  # the advisor's learning rate as the state holds it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(
    address: str, processes: int, pid: int, devices: int, out: Path, *extra: str
) -> subprocess.Popen:
    flags = os.environ.get("XLA_FLAGS", "")
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={devices}".strip(),
        # the coordinator listens on the loopback address only
        JAX_COORDINATOR_BIND_ADDRESS=address,
    )
    log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 - closed with the process
    cmd = [sys.executable, str(WORKER), address, str(processes), str(pid), str(out), *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.log.close()


def _finish(procs: list[subprocess.Popen], outs: list[Path]) -> list[dict]:
    """Wait for every worker; if one fails or time runs out, kill the rest (by id)."""
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if None not in codes or any(c not in (None, 0) for c in codes):
                break  # all done, or one failed: the others would wait for it in vain
            time.sleep(0.05)
    finally:
        _kill(procs)
    logs = "\n".join(f"--- {o.name}\n{o.with_suffix('.log').read_text()[-3000:]}" for o in outs)
    assert all(p.returncode == 0 for p in procs), f"a worker failed or hung:\n{logs}"
    return [json.loads(o.read_text()) for o in outs]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    address = f"127.0.0.1:{_free_port()}"
    outs = [tmp / "p0.json", tmp / "p1.json"]
    checkpoints = str(tmp / "checkpoints")  # one directory that both processes write
    procs = []
    try:
        procs.append(_start(address, 2, 0, 2, outs[0], checkpoints))
        procs.append(_start(address, 2, 1, 2, outs[1], checkpoints))
        # meanwhile, the ordinary one-device runs in this process
        prog = program()
        carry = jax.jit(prog.init)(jax.random.key(KEY), hparams())
        carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, WINDOWS))(carry)
        one = result(*jax.device_get((rows, carry.best, carry.state)))
        r = loop(task()).run(key=jax.random.key(KEY), hparams=hparams(), max_windows=WINDOWS)
        one["loop"] = loop_result(r)
    except BaseException:
        _kill(procs)
        raise
    p0, p1 = _finish(procs, outs)
    return {"p0": p0, "p1": p1, "one": one}


@pytest.mark.timeout(WAIT + 60)
def test_each_process_trains_its_own_half_and_pbt_copies_across(runs):
    for pid in (0, 1):
        r = runs[f"p{pid}"]
        assert r["cluster"] == {"process": pid, "processes": 2, "local_devices": 2, "devices": 4}
        assert r["members_here"] == 4 and r["local_devices"] == 2
        assert r["addressable"] is False  # the population spans both processes
        assert r["again"] is True and "already joined as process" in r["conflict"]
    # members 0-3 live on process 0, 4-7 on process 1: some copies crossed over
    parents = np.asarray(runs["p0"]["parent"])
    crossed = [(i, p) for row in parents for i, p in enumerate(row) if i // 4 != p // 4]
    assert crossed, parents


@pytest.mark.timeout(WAIT + 60)
def test_two_processes_equal_the_one_device_run_bit_for_bit(runs):
    p0, p1, one = runs["p0"], runs["p1"], runs["one"]
    # scores, hyperparameter rows, lineage, rollbacks, the best member (its score,
    # window, index, hyperparameters and weights) and every member's final weights
    for k in ("score", "learning_rate", "parent", "rollback", "best", "final_w"):
        assert p0[k] == p1[k], k  # every process fetched the same results
        assert p0[k] == one[k], k  # and they are the one-device run's, exactly
        assert p0["placed"][k] == p1["placed"][k] == one[k], k  # from a placed carry too
    assert np.isfinite(one["score"]).all() and one["best"]["window"] >= 0


@pytest.mark.timeout(WAIT + 60)
def test_a_loop_over_two_processes_equals_the_one_process_loop(runs):
    one = runs["one"]["loop"]
    assert one["ended"] == ["budget", WINDOWS, WINDOWS, 0] and one["best"][1] >= 0
    assert len(one["ensemble"]) == 3 and one["best_w"] != one["final_w"][0]
    assert one["history"][-1]["phase"] == "COOLING" and one["rates"] == [LR] * 8  # advised
    # a callback on process 0 stopped both processes after window 2; the same Loop
    # resumed from the checkpoints both wrote and ended where one process ends: the
    # history, the best score, window, member and hyperparameters, every member's
    # weights, the ensemble
    for pid in (0, 1):
        assert runs[f"p{pid}"]["stopped"] == ["stopped", 3]
        assert runs[f"p{pid}"]["loop"] == one
    assert runs["p0"]["checkpoints"] == [
        ".lock",
        "manifest.json",
        "window_00000002",
        "window_00000003",
    ]
    # and on process 0 alone, over its two devices
    assert runs["p0"]["local"] == one and "local" not in runs["p1"]
    # process 0 asked the advisor; process 1 applied its reply without asking
    assert runs["p0"]["asked"] == 1 and runs["p1"]["asked"] == 0
    assert runs["p0"]["advised"] == [[WINDOWS - 1, {"learning_rate": LR}]]


@pytest.mark.timeout(WAIT + 60)
def test_process_0_decides_for_every_process_of_a_loop(runs):
    for pid in (0, 1):  # process 1 asked to stop and to prune; process 0 asked neither
        got = runs[f"p{pid}"]["plumbing"]
        assert got["agreed"] == [False, None]
        assert got["shared"] == {"from": 0, "text": "é" * 5000}
        assert got["consulted"] == [1 - pid, {"learning_rate": LR}, None]  # asked on 0 only
        assert got["failed"] == [{}, "advisor: RuntimeError: down"]
        assert got["written"] == [[LR] * 8, ["pop"]]  # written in place on the mesh
    assert runs["p0"]["plumbing"]["written"] == runs["p1"]["plumbing"]["written"]


@pytest.mark.timeout(WAIT + 60)
def test_a_loop_on_a_mesh_compiles_nothing_after_its_first_window(runs):
    local, stopped = runs["p0"]["local_seen"], runs["p0"]["seen"]  # at each window's end
    assert len(local) == WINDOWS and local[0] > 0 and local[1:] == [local[1]] * (WINDOWS - 1)
    assert len(stopped) == 4 and stopped[0] > 0 and stopped[2] == stopped[1]
    assert runs["p1"]["seen"] == []  # callbacks run on process 0 only


@pytest.mark.timeout(WAIT + 60)
def test_a_loop_refuses_a_mesh_it_cannot_use_before_any_work(runs):
    uneven, elsewhere = runs["p0"]["refused"]
    assert "Loop: population size 3 is not a multiple of the 2 devices on 'pop'" in uneven
    assert "the mesh holds another process's devices only" in elsewhere
    mesh = hj.distributed.make_mesh()
    with pytest.raises(ValueError, match="give population=N"):
        hj.Loop(task=task(), mesh=mesh)
    with pytest.raises(ValueError, match="cannot be used with jit=False"):
        loop(task(), mesh, jit=False)
    with pytest.raises(ValueError, match="not 'pop'"):
        loop(task(), jax.sharding.Mesh(np.asarray(jax.devices()), ("x",)))
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        loop(task(), "mesh")


# -- in one process: the layout rules and bad input -------------------------------------


def test_carry_layout_splits_members_and_replicates_the_best():
    shape = jax.eval_shape(program().init, jax.random.key(0), hparams())
    mesh = hj.distributed.make_mesh()
    layout = carry_shardings(shape, mesh)
    spec = lambda s: tuple(s.spec)  # noqa: E731
    assert spec(layout.state["w"]) == ("pop",) and spec(layout.snap.score) == ("pop",)
    assert spec(layout.tuner_state.since) == ("pop",) and spec(layout.alive) == ("pop",)
    assert spec(layout.tuner_state.generation) == () and spec(layout.key) == ()
    assert spec(layout.best.state["w"]) == () and spec(layout.window) == ()
    # the best member is one member: replicated even where a leaf's leading axis is N
    wide = shape._replace(best=shape.best._replace(state=jax.ShapeDtypeStruct((8,), np.float32)))
    assert spec(carry_shardings(wide, mesh).best.state) == ()
    with pytest.raises(ValueError, match="single run's carry"):
        carry_shardings(shape._replace(alive=jax.ShapeDtypeStruct((), bool)), mesh)


def test_fetch_returns_numpy_and_plain_keys():
    got = hj.distributed.fetch({"s": jax.numpy.arange(3.0), "k": jax.random.key(1), "n": None})
    assert isinstance(got["s"], np.ndarray) and got["s"].tolist() == [0.0, 1.0, 2.0]
    assert got["k"].dtype == np.uint32 and got["n"] is None


def test_bad_input_fails_before_any_work():
    with pytest.raises(ValueError, match="'host:port'"):
        hj.distributed.initialize("127.0.0.1", 2, 0)
    with pytest.raises(ValueError, match="outside 1..65535"):
        hj.distributed.initialize("127.0.0.1:70000", 2, 0)
    with pytest.raises(ValueError, match="below num_processes=2, got 2"):
        hj.distributed.initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="num_processes must be an integer >= 1"):
        hj.distributed.initialize("127.0.0.1:1234", 0, 0)
    with pytest.raises(ValueError, match="cpu_collectives must be 'gloo' or 'mpi'"):
        hj.distributed.initialize(cpu_collectives="nccl")
    # JAX already ran here: joining now cannot work, and says so
    with pytest.raises(RuntimeError, match="must be called before"):
        hj.distributed.initialize("127.0.0.1:1234", 2, 0)
    assert hj.distributed.initialize(num_processes=1) == hj.distributed.Cluster(0, 1, 1, 1)
    mesh = hj.distributed.make_mesh()
    with pytest.raises(ValueError, match="single-run program"):
        sharded(hj.program.build(task(), hj.fixed()), mesh)
    with pytest.raises(ValueError, match="not 'pop'"):
        sharded(program(), jax.sharding.Mesh(np.asarray(jax.devices()), ("x",)))
    with pytest.raises(TypeError, match="must be a jax.sharding.Mesh"):
        sharded(program(), "mesh")
    with pytest.raises(ValueError, match="windows must be an integer >= 1"):
        sharded(program(), mesh).scan(None, 0)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        shardings({"w": np.zeros(3)}, mesh, 0)
