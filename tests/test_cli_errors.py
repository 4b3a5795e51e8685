"""Bad command lines and damaged run directories: a one-line message, exit code 2, no
traceback, before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hagfish_jax.shell import cli
from hagfish_jax.shell.records import RunRecords


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--hidden", "abc"], "--hidden must be positive integers"),
        (["--hidden", "0"], "--hidden must be positive integers"),
        (["--hidden", "-4"], "--hidden must be positive integers"),
        (["--hidden", ""], "--hidden must be positive integers"),
        (["--seed", "-1"], "--seed must be an integer from 0"),
        (["--population", "-3"], "--population must be >= 2"),
        (["--tuner", "guard", "--population", "4"], "--population is for --tuner pbt"),
    ],
)
def test_bad_demo_options_are_usage_errors(extra, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--out", str(tmp_path), *extra])
    assert err.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "hagfish demo: error:" in err and "usage: hagfish demo" in err


def test_out_naming_a_file_is_a_usage_error(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--out", str(target)])
    assert err.value.code == 2 and "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("damaged", ["run.json", "events.jsonl"])
def test_demo_and_plot_on_a_damaged_directory_say_so_in_one_line(tmp_path, damaged):
    with RunRecords(tmp_path, meta={"task": "t"}) as rec:
        rec.log("run", [{"window": 0, "val_accuracy": 0.5}])
        rec.event("exploit", window=0)
    path = tmp_path / damaged
    path.write_text("{ not json\n" if damaged == "events.jsonl" else "{ not json")
    for argv in (["plot", str(tmp_path)], ["demo", "--out", str(tmp_path), "--windows", "1"]):
        out = subprocess.run([sys.executable, "-m", "hagfish_jax.shell.cli", *argv],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and damaged in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_plot_on_a_file_says_it_is_a_file(tmp_path, capsys):
    target = tmp_path / "summary.json"
    target.write_text("{}")
    assert cli.main(["plot", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
