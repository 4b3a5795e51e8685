"""Run records mirrored into TensorBoard event files: the files parse (TFRecord framing
and CRCs checked, read with tensorboardX's own protocol buffers), trajectories and
exploits match the CSV records, resumes add no duplicate points, the CLI flags, and a
clear error without the ``tensorboard`` extra."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shutil
import struct
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax.shell import cli, hpo
from hagfish_jax.shell.loop import Backoff, Loop, RecordRun
from hagfish_jax.shell.records import RunRecords, read_run, to_tensorboard
from hagfish_jax.shell.tensorboard import EVENTS_RUN, TensorBoardWriter
from hagfish_jax.tasks import REGISTRY, TaskEntry

pytest.importorskip("tensorboardX")
pytest.importorskip("sklearn")

from tensorboardX.proto import event_pb2  # noqa: E402
from tensorboardX.record_writer import masked_crc32c  # noqa: E402

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.5), momentum=hj.Uniform(0.0, 0.9))
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.5)


def init(key, hparams):
    w = jax.random.normal(key, (3,))
    return hj.set_hparams({"w": w, "opt": TX.init(w)}, hparams)


def train_window(state, key):
    u, opt = TX.update(2 * (state["w"] - 1.0), state["opt"], state["w"])
    w = optax.apply_updates(state["w"], u)
    return {"w": w, "opt": opt}, {"loss": jnp.sum((w - 1.0) ** 2)}


def evaluate(state):
    loss = jnp.sum((state["w"] - 1.0) ** 2)
    return {"score": -loss, "train_score": -loss}


BOWL = hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=SPACE,
               default_hparams={"learning_rate": 0.1, "momentum": 0.5}, name="bowl")


def read_tb(logdir, cut_ok: bool = False) -> dict:
    """``{run: {tag: [(step, value or text), ...]}}`` from every event file under
    ``logdir``, in file order; each record's length and data CRCs are checked and each
    file starts with its version record (with ``cut_ok``, a file may end in a record
    cut short, which is left out)."""
    out: dict = {}
    for path in sorted(logdir.glob("*/*tfevents*")):
        data, pos = path.read_bytes(), 0
        series = out.setdefault(path.parent.name, {})
        while pos < len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            if cut_ok and pos + 16 + length > len(data):
                break
            (crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            assert crc == masked_crc32c(header), path
            body = data[pos + 12 : pos + 12 + length]
            (crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
            assert crc == masked_crc32c(body), path
            event = event_pb2.Event.FromString(body)
            assert pos > 0 or event.file_version == "brain.Event:2", path
            pos += 16 + length
            for v in event.summary.value:
                value = v.tensor.string_val[0].decode() if v.HasField("tensor") else v.simple_value
                series.setdefault(v.tag, []).append((event.step, value))
    return out


def same(a: dict, b: dict) -> bool:
    """Two :func:`read_tb` results are the same (NaN equal to NaN)."""
    def key(tb):
        return {r: {t: [(s, repr(v)) for s, v in p] for t, p in tags.items()}
                for r, tags in tb.items()}
    return key(a) == key(b)


def assert_no_duplicate_steps(tb: dict) -> None:
    for run, tags in tb.items():
        for tag, points in tags.items():
            steps = [s for s, _ in points]
            assert steps == sorted(set(steps)), (run, tag, steps)


def f32(values):
    return np.asarray(values, np.float32)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """``hagfish demo --tensorboard`` on a small task added to the registry (a module
    path with a dot), 4 members for 5 windows; no figures (tests/test_plots.py)."""
    module = types.ModuleType("hagfish_tests.bowl")
    module.make_task = lambda seed=0: BOWL
    out = tmp_path_factory.mktemp("demo") / "run"
    argv = ["demo", "--task", "bowl", "--windows", "5", "--out", str(out), "--quiet",
            "--tensorboard"]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setitem(sys.modules, module.__name__, module)
        mp.setitem(REGISTRY, "bowl", TaskEntry(module.__name__, "a bowl", population=4))
        mp.setattr(hj.plots, "plot_run", lambda *args, **kwargs: [])
        assert cli.main(argv) == 0
    assert f"tensorboard --logdir {out / 'tensorboard'}" in printed.getvalue()
    return out


def test_the_hyperparameter_trajectories_and_metrics_equal_the_csv_rows(demo_dir):
    run, tb = read_run(demo_dir), read_tb(demo_dir / "tensorboard")
    assert run["meta"]["hparams"] == list(SPACE.names)
    assert "tensorboard" not in run["meta"]["config"]  # not part of what the run is
    assert set(tb) == {f"member_{m:02d}" for m in range(4)}
    for trial, rows in run["rows"].items():
        windows = [r["window"] for r in rows]
        assert windows == list(range(5))
        for tag, column in [(f"hparams/{n}", n) for n in SPACE.names] + [
            ("metrics/score", "score"), ("metrics/train_score", "train_score"),
            ("metrics/cost", "cost"), ("metrics/parent", "parent"),
        ]:
            points = tb[trial][tag]
            assert [s for s, _ in points] == windows
            np.testing.assert_array_equal(f32([v for _, v in points]),
                                          f32([r[column] for r in rows]))
    assert_no_duplicate_steps(tb)


def test_exploits_show_at_their_window_in_the_exploited_members_run(demo_dir):
    run, tb = read_run(demo_dir), read_tb(demo_dir / "tensorboard")
    exploits = [e for e in run["events"] if e["kind"] == "exploit"]
    assert len(exploits) >= 3  # one member a generation at N=4
    recorded = {(f"member_{e['member']:02d}", e["window"], float(e["parent"])) for e in exploits}
    shown = {(r, s, v) for r, tags in tb.items() for s, v in tags.get("pbt/parent", [])}
    assert shown == recorded
    tag = "events/exploit/text_summary"
    texts = {(r, s) for r, tags in tb.items() for s, _ in tags.get(tag, [])}
    assert texts == {(r, s) for r, s, _ in recorded}
    member, window, parent = sorted(recorded)[0]
    text = dict(tb[member][tag])[window]
    assert text.startswith("**exploit**") and f"- parent: {int(parent)}" in text
    # the member's parent column says the same at that window
    assert dict(tb[member]["metrics/parent"])[window] == parent


def test_exporting_the_run_directory_gives_what_was_streamed(demo_dir, tmp_path):
    logdir = to_tensorboard(demo_dir, tmp_path / "export")
    assert logdir == tmp_path / "export"
    assert same(read_tb(logdir), read_tb(demo_dir / "tensorboard"))
    before = sorted(logdir.rglob("*tfevents*"))
    to_tensorboard(demo_dir, logdir)  # again: every run is there already, nothing is added
    assert sorted(logdir.rglob("*tfevents*")) == before


def test_a_resumed_run_adds_no_duplicate_points(demo_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(demo_dir, out)
    shutil.rmtree(out / "tensorboard" / "member_01")  # e.g. a log directory made later
    old = read_run(out)
    with RunRecords(out, tensorboard=True) as records:  # member_01 is written again, whole
        for trial, rows in old["rows"].items():  # a resumed run replays what it recorded
            assert records.log(trial, rows) == 0
        for e in old["events"]:
            assert not records.event(**e)
        new = {**old["rows"]["member_00"][-1], "window": 5, "learning_rate": 0.5}
        assert records.log("member_00", [new]) == 1
        assert records.event("exploit", window=5, member=0, parent=3)
    tb, streamed = read_tb(out / "tensorboard"), read_tb(demo_dir / "tensorboard")
    assert_no_duplicate_steps(tb)
    assert same({m: tb[m] for m in ("member_01", "member_02", "member_03")},
                {m: streamed[m] for m in ("member_01", "member_02", "member_03")})
    assert tb["member_00"]["hparams/learning_rate"][-1] == (5, 0.5)
    assert tb["member_00"]["pbt/parent"][-1] == (5, 3.0)
    files = {p.parent.name: len(list(p.parent.glob("*tfevents*")))
             for p in (out / "tensorboard").glob("*/*tfevents*")}
    assert files == {"member_00": 2, "member_01": 1, "member_02": 1, "member_03": 1}
    # another run replacing this one takes the old event files with the old records
    with RunRecords(out, {"task": "other"}, on_mismatch="replace", tensorboard=True) as records:
        records.log("run", [{"window": 0, "score": 1.0}])
        records.clear()  # and so does clearing an open directory
        records.log("run", [{"window": 0, "score": 2.0}])
    assert read_tb(out / "tensorboard") == {"run": {"metrics/score": [(0, 2.0)]}}


def test_a_resume_writes_what_a_killed_job_recorded_but_never_flushed(tmp_path):
    meta, tb_dir = {"hparams": ["lr"]}, tmp_path / "tensorboard"

    def rows(windows):
        return [{"window": w, "score": w / 10, "lr": 0.01} for w in windows]

    with RunRecords(tmp_path, meta, tensorboard=True) as records:
        records.log("member_00", rows(range(4)))
        records.event("rollback", window=2, to_window=1)
        records.log("member_00", rows([4]))
    # killed before the next flush: window 4's point half in its file, windows 5-7 and
    # a rollback in the CSV and events.jsonl only (recorded here without a writer)
    (old,) = tb_dir.glob("member_00/*tfevents*")
    os.truncate(old, old.stat().st_size - 10)
    with RunRecords(tmp_path, meta) as records:
        records.log("member_00", rows(range(5, 8)))
        records.event("rollback", window=6, to_window=5)
    with RunRecords(tmp_path, meta, tensorboard=True) as records:
        assert records.log("member_00", rows(range(9))) == 1
    tb = read_tb(tb_dir, cut_ok=True)
    assert_no_duplicate_steps(tb)
    assert [s for s, _ in tb["member_00"]["metrics/score"]] == list(range(9))
    assert [s for s, _ in tb["member_00"]["hparams/lr"]] == list(range(9))
    assert [s for s, _ in tb["member_00"]["events/rollback/text_summary"]] == [2, 6]
    with RunRecords(tmp_path, meta, tensorboard=True):  # all there: nothing is added
        pass
    assert len(list(tb_dir.glob("member_00/*tfevents*"))) == 2


def test_the_loops_record_run_puts_a_populations_hyperparameters_in_member_runs(tmp_path):
    records = RunRecords(tmp_path, meta={"hparams": list(SPACE.names)}, tensorboard=True)
    loop = Loop(task=BOWL, tuner=hj.pbt(SPACE, fraction=0.25), population=4,
                callbacks=[RecordRun(records)], backoff=Backoff(plateau=50, dormant=60, backoff=1))
    hparams = {"learning_rate": jnp.linspace(0.01, 0.3, 4), "momentum": jnp.full(4, 0.5)}
    loop.run(None, jax.random.key(0), max_windows=5, hparams=hparams)  # as the demo's
    records.close()
    run = read_run(tmp_path)
    updates = [e for e in run["events"] if e["kind"] == "hparams"]
    assert [e["window"] for e in updates] == list(range(5))
    exploits = [e for e in run["events"] if e["kind"] == "exploit"]
    assert exploits and all(e["member"] != e["parent"] for e in exploits)
    tb = read_tb(tmp_path / "tensorboard")
    for i in range(4):
        rows = run["rows"][f"run_{i:02d}"]
        for name in SPACE.names:  # the values each window trained with, from the rows
            points = tb[f"run_{i:02d}"][f"hparams/{name}"]
            assert [s for s, _ in points] == list(range(5))
            np.testing.assert_array_equal(f32([v for _, v in points]), f32([r[name] for r in rows]))
        assert [s for s, _ in tb[f"run_{i:02d}"]["metrics/score"]] == list(range(5))
        # the values in force move only where the tuner changed them: window 0 is the start
        assert rows[0]["learning_rate"] == pytest.approx(float(hparams["learning_rate"][i]))
    for e in exploits:
        parent = tb[f"run_{e['member']:02d}"]["pbt/parent"]
        assert (e["window"], float(e["parent"])) in [(s, float(v)) for s, v in parent]
    texts = tb[EVENTS_RUN]["events/hparams/text_summary"]  # the population-wide events
    assert [s for s, _ in texts] == list(range(5)) and "- source: tuner" in texts[0][1]
    assert_no_duplicate_steps(tb)


def test_points_reach_the_file_while_the_run_goes_on(tmp_path):
    writer = TensorBoardWriter(tmp_path, flush_secs=0.05)
    writer.log("run", [{"window": 0, "score": 0.25, "phase": "warmup"}])
    writer.event({"kind": "rollback", "window": 0, "to_window": 0}, index=0)
    writer.event({"kind": "rollback", "window": 0, "to_window": 0}, index=0)  # once only
    deadline, tb = time.monotonic() + 5.0, {}
    while time.monotonic() < deadline and "events/rollback/text_summary" not in tb.get("run", {}):
        time.sleep(0.02)
        tb = read_tb(tmp_path)  # what a reader sees before close
    assert tb["run"]["metrics/score"] == [(0, 0.25)]  # the text column is left out
    assert [s for s, _ in tb["run"]["events/rollback/text_summary"]] == [0]
    writer.close()
    with pytest.raises(ValueError, match="flush_secs"):
        TensorBoardWriter(tmp_path, flush_secs=0)
    with pytest.raises(NotADirectoryError):
        TensorBoardWriter(next((tmp_path / "run").iterdir()))
    with pytest.raises(TypeError, match="tensorboard"):
        RunRecords(tmp_path / "never", tensorboard=3)
    assert not (tmp_path / "never").exists()


def test_cli_hpo_mirrors_each_trial_as_it_ends(tmp_path, monkeypatch):
    out, logdir, shown = tmp_path / "hpo", tmp_path / "tb", []

    def rounds(config, out, progress=None):
        """Trials as ``run_hpo`` records them: epoch rows when a trial ends, events
        naming their trial, a summary; finished trials are skipped on a rerun."""
        with RunRecords(out, meta={"hparams": ["learning_rate"]},
                        metrics_name="metrics_epoch.csv") as rec:
            for r in range(config.rounds):
                name = f"trial_{r:03d}"
                if name in rec.summaries():
                    continue
                rec.event("adjusted", trial=name, note="batch size clamped")
                rows = [{"window": e, "val_accuracy": 0.5 + r / 10 + e / 100,
                         "learning_rate": 10.0 ** -(r + 2)} for e in range(3)]
                rec.log(name, rows)
                rec.finish_trial(name, {"best_val_accuracy": rows[-1]["val_accuracy"]})
                progress(r, {"status": "finished"})
                shown.append(sorted(read_tb(logdir)))  # in TensorBoard once it ended
            return hpo.HpoResult(rec.path, rec.summaries(), None, [])

    monkeypatch.setattr(hpo, "run_hpo", rounds)
    argv = ["hpo", "--rounds", "2", "--out", str(out), "--quiet", "--tensorboard", str(logdir)]
    assert cli.main(argv) == 0
    assert shown == [["trial_000"], ["trial_000", "trial_001"]]
    tb = read_tb(logdir)
    assert tb["trial_001"]["hparams/learning_rate"] == [(e, pytest.approx(1e-3)) for e in range(3)]
    assert [s for s, _ in tb["trial_001"]["metrics/val_accuracy"]] == [0, 1, 2]
    assert "batch size clamped" in tb["trial_001"]["events/adjusted/text_summary"][0][1]
    assert cli.main([*argv[:2], "3", *argv[3:]]) == 0  # a third round later
    again = read_tb(logdir)
    assert_no_duplicate_steps(again)
    assert same({t: again[t] for t in tb}, tb) and sorted(again) == sorted(tb) + ["trial_002"]
    assert len(list(logdir.rglob("*tfevents*"))) == 3


def test_without_the_extra_the_error_names_it(tmp_path, monkeypatch, capsys):
    for name in [n for n in sys.modules if n.split(".")[0] == "tensorboardX"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    hint = re.escape('pip install "hagfish-jax[tensorboard]"')
    with pytest.raises(ImportError, match=hint):
        RunRecords(tmp_path / "run", tensorboard=True)
    assert not (tmp_path / "run").exists()  # refused before anything is written
    with pytest.raises(ImportError, match=hint):
        to_tensorboard(tmp_path, tmp_path / "tb")
    with RunRecords(tmp_path / "plain") as records:  # records without TensorBoard work
        assert records.log("run", [{"window": 0, "score": 1.0}]) == 1
    monkeypatch.delitem(sys.modules, "hagfish_jax.shell.tensorboard")
    importlib.import_module("hagfish_jax.shell.tensorboard")  # imports without it
    for argv in (["demo", "--tensorboard"], ["hpo", "--tensorboard"]):
        assert cli.main([*argv, "--out", str(tmp_path / "cli"), "--quiet"]) == 1
        assert 'pip install "hagfish-jax[tensorboard]"' in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


def test_a_damaged_record_ends_what_a_resume_reads_of_an_event_file(tmp_path):
    from tensorboardX.proto import event_pb2

    from hagfish_jax.shell.tensorboard import _records

    with RunRecords(tmp_path / "run", tensorboard=True) as rec:
        rec.log("t", [{"window": w, "val_accuracy": 0.1 * w} for w in range(5)])
    (path,) = (tmp_path / "run" / "tensorboard").glob("t/*tfevents*")
    whole = _records(path, event_pb2)
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # a flipped byte inside the last record's body, nothing cut
    path.write_bytes(bytes(data))
    assert len(_records(path, event_pb2)) == len(whole) - 1
