"""hj.ProgressBar: a tqdm bar over a Loop's windows, run through real (small) Loops."""

from __future__ import annotations

import io
import re
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax.shell.loop import Backoff, Callback, Loop

TARGET = jnp.array([1.0, -2.0, 0.5])
SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.5))
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
WINDOWS = 8
# evaluate every window, never cool down: the phase stays ACTIVE over these short runs
STEADY = dict(plateau=50, dormant=60, backoff=1.0)


def init(key, hparams):
    w = jax.random.normal(key, (3,))
    return hj.set_hparams({"w": w, "opt": TX.init(w)}, hparams)


def train_window(state, key):
    g = 2 * (state["w"] - TARGET)
    u, opt = TX.update(g, state["opt"], state["w"])
    return {"w": optax.apply_updates(state["w"], u), "opt": opt}, {}


def evaluate(state):
    loss = jnp.sum((state["w"] - TARGET) ** 2)
    return {"score": -loss, "val_loss": loss}


TASK = hj.Task(
    init=init,
    train_window=train_window,
    evaluate=evaluate,
    space=SPACE,
    default_hparams={"learning_rate": 0.05},
    name="bowl",
)


def bar(**options):
    """A bar whose text goes to a string, drawn at every update."""
    text = io.StringIO()
    return hj.ProgressBar(file=text, mininterval=0, miniters=1, **options), text


def counts(text: io.StringIO) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+)", text.getvalue())]


class Spy(Callback):
    """Placed after the bar: what the bar shows after each improvement."""

    def __init__(self, progress):
        self.progress, self.seen = progress, []

    def on_improvement(self, loop, window, score):
        self.seen.append((window, score, self.progress.postfix))


class StopAt(Callback):
    def __init__(self, window):
        self.window = window

    def on_window_end(self, loop, window, metrics):
        if window == self.window:
            loop.stop()


class Interrupt(Callback):
    def on_window_end(self, loop, window, metrics):
        if window == 2:
            raise KeyboardInterrupt  # not an Exception: it leaves the Loop, as Ctrl-C does


@pytest.fixture(scope="module")
def single():
    return Loop(task=TASK, backoff=Backoff(**STEADY))


@pytest.fixture(scope="module")
def population():
    return Loop(task=TASK, tuner=hj.pbt(SPACE), population=4, backoff=Backoff(**STEADY))


def test_a_run_to_its_budget_counts_every_window_and_closes(single):
    progress, text = bar()
    single.callbacks = [progress]
    result = single.run(key=jax.random.key(0), max_windows=WINDOWS)
    assert result.reason == "budget"
    assert (progress.n, progress.total, progress.closed) == (WINDOWS, WINDOWS, True)
    # compiled on the first window (described as such), then one step per window
    out = text.getvalue()
    assert out.index("compiling") < out.index("tuning")
    shown = [n for n, total in counts(text) if total == WINDOWS]
    assert set(range(1, WINDOWS + 1)) <= set(shown)
    assert progress.postfix == {"best": f"{result.best_score:.4g}", "phase": "active"}
    assert f"best={result.best_score:.4g}" in out and "phase=active" in out


def test_a_population_bar_names_the_best_member_as_the_run_goes(population):
    progress, text = bar(desc="pbt", digits=6)
    spy = Spy(progress)
    population.callbacks = [progress, spy]
    hp = SPACE.sample(jax.random.key(2), 4)
    result = population.run(key=jax.random.key(1), max_windows=WINDOWS, hparams=hp)
    assert spy.seen, "the run never improved"
    window, score, shown = spy.seen[-1]  # the last improvement is the run's best
    assert window == result.best_window and score == pytest.approx(result.best_score)
    assert shown["member"] == result.best_member
    assert shown["best"] == f"{result.best_score:.6g}"
    assert f"member={result.best_member}" in text.getvalue()
    assert progress.n == WINDOWS and progress.closed


def test_a_run_stopped_early_fills_its_bar_and_names_the_reason(single):
    progress, text = bar()
    single.callbacks = [progress, StopAt(3)]
    result = single.run(key=jax.random.key(0), max_windows=WINDOWS)
    assert result.reason == "stopped" and result.windows == 4
    assert (progress.n, progress.total, progress.closed) == (4, 4, True)
    assert "tuning (stopped)" in text.getvalue()


def test_in_a_notebook_an_early_stop_shows_a_full_green_widget(single, capsys):
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm as widget_bar

    progress = hj.ProgressBar()
    progress._tqdm = widget_bar  # what tqdm.auto picks inside a Jupyter kernel
    single.callbacks = [progress, StopAt(3)]
    single.run(key=jax.random.key(0), max_windows=WINDOWS)
    _, gauge, _ = progress.bar.container.children
    assert (gauge.value, gauge.max, gauge.bar_style) == (4, 4, "success")
    capsys.readouterr()  # outside a kernel the widget prints its text form


def test_a_step_that_raises_closes_the_bar_where_the_error_came():
    calls = []
    step = jax.jit(lambda s, k: train_window(s, k))

    def failing(state, key):  # plain Python: the Loop calls it as given
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the data loader broke")
        return step(state, key)

    progress, text = bar()
    loop = Loop(failing, jax.jit(evaluate), callbacks=[progress])
    w = jnp.zeros(3)
    with pytest.warns(UserWarning, match="step or evaluation raised"):
        result = loop.run({"w": w, "opt": TX.init(w)}, jax.random.key(0), WINDOWS)
    assert result.reason.startswith("error: RuntimeError")
    assert (progress.n, progress.total, progress.closed) == (3, WINDOWS, True)
    assert "tuning (error)" in text.getvalue()


def test_an_interrupted_run_leaves_its_bar_to_the_next_run_which_closes_it(single):
    progress, _ = bar()
    single.callbacks = [progress, Interrupt()]
    with pytest.raises(KeyboardInterrupt):
        single.run(key=jax.random.key(0), max_windows=WINDOWS)
    first = progress.bar
    assert not progress.closed and progress.n == 3
    progress.close()
    assert progress.closed and first.disable  # tqdm's own flag once closed
    single.callbacks = [progress]
    single.run(key=jax.random.key(0), max_windows=WINDOWS)
    assert progress.bar is not first and (progress.n, progress.closed) == (WINDOWS, True)


def test_a_resumed_run_starts_its_bar_where_the_checkpoint_left_off():
    # a Loop resumed from a checkpoint of window 2 trains windows 3.. (tests/test_loop*.py)
    loop = SimpleNamespace(max_windows=WINDOWS, population=None, backoff=Backoff())
    progress, text = bar()
    progress.on_loop_start(loop, None)
    for window in range(3, WINDOWS):
        progress.on_window_end(loop, window, {})
    assert progress.n == WINDOWS and progress.total == WINDOWS
    assert {n for n, _ in counts(text)} == {0, 4, 5, 6, 7, 8}  # 0: while compiling
    progress.close()


def test_bad_options_and_a_missing_tqdm_fail_clearly(monkeypatch):
    with pytest.raises(ValueError, match="digits must be an integer >= 1"):
        hj.ProgressBar(digits=0)
    with pytest.raises(ValueError, match="total is set by the bar"):
        hj.ProgressBar(total=5)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    with pytest.raises(ImportError, match=r"hagfish-jax\[tasks\]"):
        hj.ProgressBar()
