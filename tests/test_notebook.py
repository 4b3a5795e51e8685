"""examples/tuning_in_a_notebook.ipynb: run from a fresh kernel without the network, and
kept in the repository without outputs."""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tuning_in_a_notebook.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# Loaded by the kernel's interpreter at start-up: any connection or name lookup outside
# this machine fails, so a notebook that needs the network fails its run here.
OFFLINE = '''
import socket

_LOCAL = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0"}
_connect, _connect_ex, _getaddrinfo = (
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)


def _check(address):
    host = address[0] if isinstance(address, tuple) else None
    if isinstance(address, tuple) and host not in _LOCAL:
        raise OSError(f"the notebook test runs offline: no connection to {host!r}")


def connect(self, address):
    _check(address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    _check((host, 0))
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
    connect, connect_ex, getaddrinfo)
'''


def code_cells(nb) -> list:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def streams(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def cell_with(nb, text: str):
    found = [c for c in code_cells(nb) if text in c.source]
    assert len(found) == 1, f"one code cell should contain {text!r}"
    return found[0]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run top to bottom in a new kernel (in a scratch directory: its run
    directory lands there), and that directory."""
    work = tmp_path_factory.mktemp("notebook")
    offline = tmp_path_factory.mktemp("offline")
    (offline / "sitecustomize.py").write_text(OFFLINE)
    # the kernel inherits this session's settings (conftest: compilation cache, XLA flags)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(offline), env.get("PYTHONPATH")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute(env=env)
    return nb, work


@pytest.mark.timeout(300)
def test_the_notebook_runs_without_errors_and_shows_its_plots(executed):
    nb, work = executed
    for cell in code_cells(nb):
        assert cell.execution_count is not None
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
        text = streams(cell)
        assert "Traceback" not in text and "callback failed" not in text, text
    images = lambda cell: sum("image/png" in o.get("data", {}) for o in cell.outputs)  # noqa: E731
    assert images(cell_with(nb, "plt.show()")) == 1  # the inline matplotlib figure
    assert images(cell_with(nb, "hj.plots.plot_run")) == 3  # three of the run's figures
    for name in ("val_loss.png", "hparams.png", "lineage.png"):
        assert (work / "runs" / "notebook" / name).is_file()


@pytest.mark.timeout(300)
def test_the_notebook_prints_the_scores_of_its_tuned_models(executed):
    nb, _ = executed
    one = streams(cell_with(nb, "one_run.run("))
    pbt = streams(cell_with(nb, "population.run("))
    for text, label in ((one, "one run"), (pbt, "PBT")):
        assert re.search(r"^reason\s+budget$", text, re.M), text
        accuracy = float(re.search(rf"{label}: test accuracy ([0-9.]+)", text).group(1))
        assert 0.85 < accuracy <= 1.0, (label, accuracy)  # a tuned MLP on digits: ~0.95
    assert re.search(r"^population\s+8$", pbt, re.M)


@pytest.mark.timeout(300)
def test_the_progress_bars_show_the_best_score_and_member(executed):
    nb, _ = executed
    cell = cell_with(nb, "population.run(")
    text = streams(cell)
    best = float(re.search(r"^best_score\s+([0-9.]+)$", text, re.M).group(1))
    member = int(re.search(r"^best_member\s+(\d+)$", text, re.M).group(1))
    if importlib.util.find_spec("ipywidgets") is None:  # tqdm.auto falls back to text
        bar = text
    else:  # a widget: its last state is saved in the notebook's metadata
        assert any(WIDGET_VIEW in o.get("data", {}) for o in cell.outputs)
        assert any(WIDGET_VIEW in o.get("data", {}) for o in cell_with(nb, "one_run.run(").outputs)
        models = nb.metadata["widgets"][WIDGET_STATE]["state"].values()
        bar = " ".join(
            html.unescape(str(m["state"].get("value", ""))).replace("\u2007", " ")
            for m in models
            if m["model_name"] == "HTMLModel"
        )
    assert re.search(r"PBT: 100%", bar), bar
    assert "20/20" in bar and f"member={member}" in bar, bar
    shown = float(re.search(r"best=([0-9.]+), phase=\w+, member=", bar).group(1))
    assert shown == pytest.approx(best, abs=5e-4)


def test_the_stored_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb["metadata"]
    assert code_cells(nb)
    for cell in code_cells(nb):
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:60]
        assert "execution" not in cell.get("metadata", {})
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(), as_version=4))
