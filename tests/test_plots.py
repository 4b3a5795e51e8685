"""Figures of a run directory and the ``hagfish plot`` command."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from hagfish_jax import cli, plots  # noqa: E402
from hagfish_jax.shell.records import RunRecords  # noqa: E402

NAN = float("nan")
ALL_FIGURES = {
    "loss.png",
    "val_loss.png",
    "accuracy.png",
    "f1.png",
    "curves.png",
    "hparams.png",
    "lineage.png",
    "cost_vs_score.png",
}


def write_population_run(path: Path) -> Path:
    """3 members x 5 windows with every column (a few NaN), exploits and summaries."""
    rec = RunRecords(
        path, meta={"task": "digits", "tuner": "pbt", "hparams": ["learning_rate", "dropout_rate"]}
    )
    for m in range(3):
        rows = [
            {
                "window": w,
                "train_loss": 2.0 / (w + 1 + m),
                "val_loss": 2.2 / (w + 1 + m),
                "train_accuracy": 0.5 + 0.08 * w + 0.01 * m,
                "val_accuracy": 0.45 + 0.07 * w + 0.01 * m,
                "train_f1": 0.4 + 0.1 * w,
                "val_f1": 0.35 + 0.1 * w,
                "cost": 10.0 * (w + 1),
                "learning_rate": 1e-3 * 10.0**m,  # spans 100x: log scale
                "dropout_rate": 0.1 * m,  # has a zero: linear scale
            }
            for w in range(5)
        ]
        rows[2]["val_loss"] = NAN
        rows[3]["train_f1"] = NAN
        rows[m]["val_accuracy"] = NAN
        rec.log(f"member_{m:02d}", rows)
    rec.event("exploit", generation=2, member=0, parent=2)
    rec.event("exploit", generation=4, member=1, parent=0)
    rec.event("rollback", generation=3, member=2)
    rec.finish_trial("member_00", {"total_cost": 50.0, "best_val_score": 0.8, "test_score": 0.78})
    rec.finish_trial("member_01", {"cost": 45.0, "best_val_score": 0.75})
    rec.finish_trial("member_02", {"total_cost": 55.0, "best_val_score": NAN})
    return path


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def population_run(tmp_path_factory) -> Path:
    return write_population_run(tmp_path_factory.mktemp("run") / "pbt")


def test_plot_run_draws_every_figure_into_out(population_run, tmp_path):
    out = tmp_path / "figures" / "pbt"  # created
    paths = plots.plot_run(population_run, out=out)
    assert {p.name for p in paths} == ALL_FIGURES
    assert all(p.parent == out for p in paths)
    for p in paths:
        assert_png(p)
    assert not list(population_run.glob("*.png"))  # nothing written into the run


def test_a_run_with_only_validation_accuracy_draws_what_it_can(tmp_path):
    rec = RunRecords(tmp_path / "run", meta={"hparams": ["learning_rate"]})
    rec.log("trial_000", [{"window": w, "val_accuracy": 0.5 + 0.1 * w} for w in range(3)])
    rec.log("trial_001", [{"window": 0, "val_accuracy": NAN}, {"window": 1, "val_accuracy": None}])
    rec.finish_trial("trial_000", {"best_val_score": 0.7})  # no cost: no cost_vs_score.png
    names = {p.name for p in plots.plot_run(rec.path)}
    assert names == {"accuracy.png", "curves.png"}
    assert_png(rec.path / "accuracy.png")
    assert not (rec.path / "loss.png").exists()


def test_hparam_axes_are_logarithmic_only_for_wide_positive_values(population_run):
    run = plots.records.read_run(population_run)
    colours = plots._colours(list(run["rows"]))
    fig = plots._hparams_figure(run["rows"], run["meta"], colours)
    lr, dropout = fig.axes
    assert (lr.get_ylabel(), lr.get_yscale()) == ("learning_rate", "log")
    assert (dropout.get_ylabel(), dropout.get_yscale()) == ("dropout_rate", "linear")
    assert len(lr.get_lines()) == 3
    assert plots._hparams_figure(run["rows"], {"hparams": ["momentum"]}, colours) is None


def test_lineage_joins_each_member_to_its_parent():
    exploits = plots._exploits(
        [
            {"kind": "exploit", "generation": 2, "member": 0, "parent": 2},
            {"kind": "rollback", "generation": 3, "member": 1},
            {"kind": "exploit", "generation": 3, "member": 1, "parent": NAN},  # ignored
        ]
    )
    assert exploits == {(2, 0): 2}
    continued, exploited = plots._lineage(exploits, [0, 1, 2], first=0, last=3)
    assert exploited == [((1, 2), (2, 0))]
    assert len(continued) == 3 * 3 - 1
    assert ((1, 0), (2, 0)) not in continued and ((2, 0), (3, 0)) in continued


def test_slots_come_from_trailing_numbers_else_sorted_order():
    assert plots._slots(["member_10", "member_02"]) == {2: "member_02", 10: "member_10"}
    assert plots._slots(["b", "a"]) == {0: "a", 1: "b"}


def test_series_skips_missing_and_non_finite_values():
    rows = [{"window": 2, "x": 1.0}, {"window": 0, "x": NAN}, {"window": 1, "x": 3}, {"window": 3}]
    assert plots._series(rows, "x") == ([1.0, 2.0], [3.0, 1.0])
    assert plots._num(True) is None and plots._num("0.5") is None and plots._num(math.inf) is None


def test_cli_plot_prints_the_written_paths(population_run, capsys):
    assert cli.main(["plot", str(population_run)]) == 0
    printed = capsys.readouterr().out.split()
    assert {Path(p).name for p in printed} == ALL_FIGURES
    for p in printed:
        assert Path(p).parent == population_run
        assert_png(Path(p))


@pytest.mark.parametrize("kind", ["missing", "no trials"])
def test_cli_plot_rejects_what_is_not_a_run_directory(tmp_path, kind, capsys):
    path = tmp_path / "nowhere"
    if kind == "no trials":
        path.mkdir()
    assert cli.main(["plot", str(path)]) == 2
    err = capsys.readouterr().err
    assert "hagfish plot" in err and str(path) in err


def test_cli_plot_with_nothing_to_draw_says_so(tmp_path, capsys):
    RunRecords(tmp_path / "empty")
    assert cli.main(["plot", str(tmp_path / "empty")]) == 1
    assert "nothing to plot" in capsys.readouterr().err


def test_missing_matplotlib_gives_the_install_hint(population_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(ImportError, match=r"pip install 'hagfish-jax\[plot\]'"):
        plots.plot_run(population_run)
    assert cli.main(["plot", str(population_run)]) == 2
    assert capsys.readouterr().err.strip() == plots.MISSING_MATPLOTLIB
