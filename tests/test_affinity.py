"""The one-core pin used around the PPO programs (hagfish_jax.shell._affinity)."""

from __future__ import annotations

import os
import threading

import pytest

from hagfish_jax.shell._affinity import one_cpu


def test_the_pin_is_public_as_hj_one_cpu():
    import hagfish_jax as hj

    assert hj.one_cpu is one_cpu and "one_cpu" in hj.__all__


def test_one_cpu_pins_every_thread_and_restores():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)  # a thread started before the pin
    worker.start()
    try:
        outer = os.sched_getaffinity(0)
        with one_cpu():
            tids = [int(t) for t in os.listdir("/proc/self/task")]
            assert len(tids) >= 2
            assert all(os.sched_getaffinity(t) == {min(outer)} for t in tids)
        assert os.sched_getaffinity(0) == outer
        assert os.sched_getaffinity(worker.native_id) == outer
    finally:
        stop.set()
        worker.join()


@pytest.mark.timeout(120)
def test_the_smallest_program_that_used_to_stall_finishes_when_pinned():
    # 16 vmapped orthogonal initialisations (a batched QR), 5 calls: unpinned, jax 0.10
    # on 2 cores can wait forever here (benchmarks/stall.py measures how often). Run in a
    # fresh process, pinned before XLA starts, as the CartPole demo is; a stall fails
    # the test at the timeout instead of blocking the suite.
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "stall.py"
    for _ in range(2):
        out = subprocess.run([sys.executable, str(script), "--child", "pin"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "finished" in out.stdout, out.stderr[-1000:]
