"""Record files at their edges: a cut-short tail repaired or skipped, values read
back with their types, the best trial, trial names that cannot leave trials/, and a
garbled lock file."""

from __future__ import annotations

import csv
import json
import math

import pytest

import hagfish_jax as hj
from hagfish_jax.shell._files import _repair_tail
from hagfish_jax.shell.lock import DirectoryLock


def test_repair_keeps_the_newline_of_the_last_whole_line(tmp_path):
    f = tmp_path / "x.csv"
    f.write_bytes(b"a\nb\npart")
    _repair_tail(f)
    assert f.read_bytes() == b"a\nb\n"


def test_repair_of_a_file_without_any_newline_empties_it(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes(b'{"kind": "cut sh')
    _repair_tail(f)
    assert f.read_bytes() == b""
    g = tmp_path / "big.jsonl"
    g.write_bytes(b"y" * 10000)  # more than one 4096-byte block
    _repair_tail(g)
    assert g.read_bytes() == b""


def test_a_killed_append_then_more_rows_reads_back_whole(tmp_path):
    rec = hj.records.RunRecords(tmp_path)
    rec.log("t", [{"window": 0, "v": 1.0}, {"window": 1, "v": 2.0}])
    rec.event("a", x=1)
    rec.close()
    with open(tmp_path / "trials" / "t" / "metrics.csv", "a") as fh:
        fh.write("2,3.")  # a kill during the append
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"kind": "b"')
    with hj.records.RunRecords(tmp_path) as rec:
        assert rec.log("t", [{"window": 2, "v": 3.0}]) == 1
        assert rec.event("c", y=2)
    run = hj.records.read_run(tmp_path)
    assert [r["v"] for r in run["rows"]["t"]] == [1.0, 2.0, 3.0]
    assert [e["kind"] for e in run["events"]] == ["a", "c"]


def test_a_reader_ignores_a_file_that_is_one_cut_short_line(tmp_path):
    # read_run does not repair a file: it must skip the half-written line
    (tmp_path / "trials").mkdir()
    (tmp_path / "events.jsonl").write_text('{"kind": "a"}')
    assert hj.records.read_run(tmp_path)["events"] == []
    (tmp_path / "events.jsonl").write_text('{"kind": "a"}\n{"kind": "b"}')
    assert hj.records.read_run(tmp_path)["events"] == [{"kind": "a"}]


def test_booleans_come_back_as_booleans(tmp_path):
    with hj.records.RunRecords(tmp_path) as rec:
        rec.log("t", [{"window": 0, "exploring": True}, {"window": 1, "exploring": False}])
    rows = hj.records.read_run(tmp_path)["rows"]["t"]
    assert [r["exploring"] for r in rows] == [True, False]


def test_a_whole_float_stays_a_float(tmp_path):
    with hj.records.RunRecords(tmp_path) as rec:
        rec.log("t", [{"window": 0, "lr": 1.0, "n": 3}])
    (row,) = hj.records.read_run(tmp_path)["rows"]["t"]
    assert row["lr"] == 1.0 and isinstance(row["lr"], float)
    assert row["n"] == 3 and isinstance(row["n"], int)


def test_a_non_finite_score_never_ranks_best(tmp_path):
    with hj.records.RunRecords(tmp_path) as rec:
        rec.finish_trial("a", {"best_val_score": 0.5})
        rec.finish_trial("b", {"best_val_score": math.inf})
        rec.finish_trial("c", {"best_val_score": math.nan})
    assert hj.records.read_run(tmp_path)["best"]["trial"] == "a"


def test_a_list_in_a_summary_is_written_as_json_in_the_csv(tmp_path):
    with hj.records.RunRecords(tmp_path) as rec:
        rec.finish_trial("a", {"best_val_score": 0.5, "tags": ["x", None, True]})
    with open(tmp_path / "trials_summary.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert json.loads(row["tags"]) == ["x", None, True]


def test_a_trial_name_may_not_start_with_a_dot_or_dash(tmp_path):
    with hj.records.RunRecords(tmp_path) as rec:
        for bad in ("..", ".", ".hidden", "-x", "_x"):
            with pytest.raises(ValueError):
                rec.log(bad, [{"window": 0, "v": 1.0}])
        assert rec.log("a.b-c_1", [{"window": 0, "v": 1.0}]) == 1


def test_a_garbled_lock_file_names_no_holder(tmp_path):
    (tmp_path / ".lock").write_text("{not json")
    lock = DirectoryLock(tmp_path)
    assert lock.holder() == {}
    with lock:  # and it is taken over
        assert "pid" in lock.holder()


def test_write_best_names_the_trial_the_caller_chose_over_a_tie(tmp_path):
    with hj.records.RunRecords(tmp_path) as rec:
        rec.finish_trial("member_02", {"best_val_score": 0.98, "test_score": 0.97})
        rec.finish_trial("member_14", {"best_val_score": 0.98})
        assert hj.records.read_run(tmp_path)["best"]["trial"] == "member_14"  # by name
        rec.write_best("member_02")  # the Loop's choice (ties to the lower val loss)
        with pytest.raises(ValueError, match="no finished trial"):
            rec.write_best("member_99")
    best = hj.records.read_run(tmp_path)["best"]
    assert best["trial"] == "member_02" and best["test_score"] == 0.97
