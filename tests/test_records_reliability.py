"""Run records under kill -9 and two writers: appends are whole or absent, a second
process is refused with the holder named, a dead holder's lock is taken over."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hagfish_jax.shell.lock import DirectoryLock, LockedError
from hagfish_jax.shell.records import DamagedRecordError, RunRecords, read_run

WRITER = textwrap.dedent(
    """
    import sys, time
    from hagfish_jax.shell.records import RunRecords
    rec = RunRecords(sys.argv[1], meta={"task": "t"})
    start = rec.last_window("run") + 1
    for w in range(start, start + 100000):
        rec.log("run", [{"window": w, "val_accuracy": w / 1e5, "note": "x" * 200}])
        rec.event("tick", window=w)
        print(w, flush=True)
        if len(sys.argv) > 2:
            time.sleep(float(sys.argv[2]))
    """
)


def _writer(path, *extra):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), *extra],
                            stdout=subprocess.PIPE, text=True)


def _kill_after(proc, rows):
    last = -1
    while last < rows:
        last = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return last


@pytest.mark.timeout(120)
def test_kill_9_during_appends_leaves_whole_rows_and_a_resume_adds_nothing_twice(tmp_path):
    for _ in range(3):  # killed three times at arbitrary moments
        last = _kill_after(_writer(tmp_path), 50)
        run = read_run(tmp_path)
        windows = [r["window"] for r in run["rows"]["run"]]
        assert windows == list(range(len(windows))) and windows[-1] >= last
        assert all(r["note"] == "x" * 200 for r in run["rows"]["run"])  # no row cut short
        ticks = [e["window"] for e in run["events"]]  # whole lines, in order, none twice
        assert ticks == sorted(set(ticks)) and ticks[-1] >= last - 1
    rec = RunRecords(tmp_path, meta={"task": "t"})  # the repaired files take new rows
    n = len(rec.rows("run"))
    assert rec.log("run", [{"window": n, "val_accuracy": 0.0, "note": "y"}]) == 1
    assert rec.log("run", [{"window": 0, "val_accuracy": 0.0, "note": "y"}]) == 0
    rec.close()
    assert [r["window"] for r in read_run(tmp_path)["rows"]["run"]] == list(range(n + 1))


def test_a_half_written_line_is_cut_on_open_and_ignored_by_readers(tmp_path):
    with RunRecords(tmp_path) as rec:
        rec.log("run", [{"window": 0, "val_accuracy": 0.5}, {"window": 1, "val_accuracy": 0.6}])
        rec.event("exploit", window=0)
    metrics = tmp_path / "trials" / "run" / "metrics.csv"
    with open(metrics, "a") as f:
        f.write("2,0.7")  # the write a kill interrupted: no newline
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"kind": "exp')
    assert [r["window"] for r in read_run(tmp_path)["rows"]["run"]] == [0, 1]
    assert len(read_run(tmp_path)["events"]) == 1
    with RunRecords(tmp_path) as rec:
        assert metrics.read_text().endswith("0.6\n")
        assert rec.log("run", [{"window": 2, "val_accuracy": 0.7}]) == 1
    assert [r["window"] for r in read_run(tmp_path)["rows"]["run"]] == [0, 1, 2]


@pytest.mark.timeout(120)
def test_a_second_process_is_refused_naming_the_holder_and_a_dead_one_is_taken_over(tmp_path):
    proc = _writer(tmp_path, "0.05")
    try:
        int(proc.stdout.readline())  # the writer holds the directory now
        with pytest.raises(LockedError, match=f"in use by pid {proc.pid} on .* since "):
            RunRecords(tmp_path, meta={"task": "t"})
        script = f"from hagfish_jax.shell.records import RunRecords; RunRecords({str(tmp_path)!r})"
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=60)
        assert other.returncode != 0 and f"pid {proc.pid}" in other.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert DirectoryLock(tmp_path).holder()["pid"] == proc.pid  # the stale lock file
    with RunRecords(tmp_path, meta={"task": "t"}) as rec:  # taken over at once
        assert DirectoryLock(tmp_path).holder()["pid"] == os.getpid()
        assert rec.rows("run")


def test_one_process_may_open_a_directory_twice_and_the_lock_goes_with_the_last(tmp_path):
    a = RunRecords(tmp_path)
    b = RunRecords(tmp_path)
    a.close()
    script = f"from hagfish_jax.shell.records import RunRecords; RunRecords({str(tmp_path)!r})"
    held = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert held.returncode != 0  # b still holds it
    b.close()
    time.sleep(0.05)
    free = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert free.returncode == 0, free.stderr
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        RunRecords(tmp_path / "a_file")


def _locked(path):
    """Whether the directory's lock is held (by any open file, this process's too)."""
    fd = os.open(path / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the probe's own lock
    return False


def test_a_new_holder_replaces_a_longer_record_left_by_an_old_one(tmp_path):
    old = {"pid": 1, "host": "a-much-longer-host-name-" * 8, "since": "2001-01-01T00:00:00"}
    (tmp_path / ".lock").write_text(json.dumps(old))  # left by a dead process
    with DirectoryLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()
        assert json.loads((tmp_path / ".lock").read_text())["host"] != old["host"]


def test_a_lock_acquired_or_released_twice_is_held_once(tmp_path):
    a = DirectoryLock(tmp_path).acquire()
    assert a.acquire() is a  # already held: nothing more to release
    assert _locked(tmp_path)
    a.release()
    assert not _locked(tmp_path)
    a, b = DirectoryLock(tmp_path).acquire(), DirectoryLock(tmp_path).acquire()
    a.release()
    a.release()  # a second release of a's share leaves b's alone
    assert _locked(tmp_path)
    b.release()
    assert not _locked(tmp_path)


def test_a_failed_open_leaves_the_directory_free(tmp_path):
    RunRecords(tmp_path, meta={"task": "a"}).close()
    with pytest.raises(ValueError, match="holds another run") as other_run:
        RunRecords(tmp_path, meta={"task": "b"})
    assert not _locked(tmp_path)
    with open(tmp_path / "events.jsonl", "w") as f:
        f.write('{"kind": "tick"\n{"kind": "tock"}\n')  # a damaged line before a whole one
    with pytest.raises(DamagedRecordError) as damaged:
        RunRecords(tmp_path, meta={"task": "a"})
    assert other_run.value and damaged.value  # the errors (and what they refer to) are kept
    assert not _locked(tmp_path)
    os.unlink(tmp_path / "events.jsonl")
    script = f"from hagfish_jax.shell.records import RunRecords; RunRecords({str(tmp_path)!r})"
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60)
    assert other.returncode == 0, other.stderr  # another process opens it
