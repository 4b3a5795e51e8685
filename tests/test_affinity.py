"""The one-core pin used around the PPO programs (hagfish_jax.shell._affinity)."""

from __future__ import annotations

import os
import threading

import pytest

from hagfish_jax.shell._affinity import one_cpu


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
