"""The autonomous loop: rollback, endings, resume, callbacks, advisor, control."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax.shell.loop import (
    Backoff,
    Callback,
    Loop,
    MetaController,
)

TARGET = jnp.array([1.0, -2.0, 0.5])
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))


def init_state():
    w = jnp.zeros(3)
    return {"w": w, "opt": TX.init(w), "t": jnp.zeros((), jnp.int32)}


def make_step(sabotage=()):
    """Gradient steps towards TARGET; in the ``sabotage`` windows the weights are thrown
    away and the learning rate set to 5.0 (a run that goes bad)."""
    bad = jnp.zeros(64, bool).at[jnp.asarray(list(sabotage) or [63])].set(bool(sabotage))

    @jax.jit
    def step(state, key):
        def sgd(carry, _):
            w, opt = carry
            g = jax.grad(lambda w: jnp.sum((w - TARGET) ** 2))(w)
            u, opt = TX.update(g, opt, w)
            return (optax.apply_updates(w, u), opt), None

        (w, opt), _ = jax.lax.scan(sgd, (state["w"], state["opt"]), None, length=3)
        broken = bad[state["t"]]
        w = jnp.where(broken, w + 50.0, w)
        opt = hj.set_hparams(
            opt, {"learning_rate": jnp.where(broken, 5.0, hj.get_hparams(opt)["learning_rate"])}
        )
        return {"w": w, "opt": opt, "t": state["t"] + 1}, {"loss": jnp.sum((w - TARGET) ** 2)}

    return step


@jax.jit
def evaluate(state):
    loss = jnp.sum((state["w"] - TARGET) ** 2)
    return {"score": -loss, "train_score": -0.9 * loss}


class Recorder(Callback):
    def __init__(self):
        self.calls = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_loop_start(self, loop, state):
        self._count("on_loop_start")

    def on_window_end(self, loop, window, metrics):
        self._count("on_window_end")

    def on_improvement(self, loop, window, score):
        self._count("on_improvement")

    def on_rollback(self, loop, window, best_window):
        self._count("on_rollback")

    def on_degradation(self, loop, window, score):
        self._count("on_degradation")

    def on_plateau(self, loop, window, score):
        self._count("on_plateau")

    def on_dormant(self, loop, window, score):
        self._count("on_dormant")

    def on_hparams_update(self, loop, window, hparams, source):
        self._count("on_hparams_update")

    def on_loop_stop(self, loop, result):
        self._count("on_loop_stop")


def test_rollback_restores_best_weights_and_hyperparameters():
    rec = Recorder()
    loop = Loop(
        make_step(sabotage=(6, 7, 8, 9)),
        evaluate,
        backoff=Backoff(patience=2, noise=0.0, plateau=50, dormant=60),
        callbacks=[rec],
    )
    seen = []

    class Watch(Callback):
        def on_rollback(self, loop, window, best_window):
            seen.append((window, best_window))

    loop.callbacks.append(Watch())
    result = loop.run(init_state(), jax.random.key(0), max_windows=12)
    assert rec.calls["on_degradation"] >= 1 and rec.calls["on_rollback"] >= 1
    window, best_window = seen[0]
    # bad from window 6; the interval doubles after it, so the second bad evaluation
    # (patience 2) is at window 8
    assert (window, best_window) == (8, 5)
    best = result.state
    assert float(hj.get_hparams(best["opt"])["learning_rate"]) == np.float32(0.1)
    assert int(best["t"]) == 6  # the state after window 5
    assert result.rollbacks >= 1 and result.best_window == 5


def run_until(step, **kwargs):
    loop = Loop(step, evaluate, **kwargs)
    return loop, loop.run(init_state(), jax.random.key(0), max_windows=kwargs.pop("windows", 12))


def test_best_state_returned_on_budget_target_stop_dormant_and_exception():
    # budget
    _, r = run_until(make_step(sabotage=(10, 11)), backoff=Backoff(noise=0.0, patience=5))
    assert r.reason == "budget" and r.windows == 12 and r.best_window == 9
    np.testing.assert_array_equal(r.state["t"], 10)
    # target
    _, r = run_until(make_step(), backoff=Backoff(noise=0.0), target=-1e-3, target_patience=2)
    assert r.reason == "target" and r.best_score >= -1e-3
    # stop() from a callback

    class Stopper(Callback):
        def on_window_end(self, loop, window, metrics):
            if window == 3:
                loop.stop()

    _, r = run_until(make_step(), callbacks=[Stopper()])
    assert r.reason == "stopped" and r.windows == 4
    # DORMANT: a step that learns nothing
    frozen = jax.jit(lambda s, k: (s, {"loss": jnp.float32(0)}))
    loop = Loop(
        frozen,
        evaluate,
        backoff=Backoff(plateau=1, dormant=2),
        controller=MetaController(max_spawns=0),
    )
    r = loop.run(init_state(), jax.random.key(0), max_windows=50)
    assert r.reason == "spawn budget spent" and r.windows < 10
    # an exception inside the step after some good windows
    inner = make_step()

    def exploding(state, key):
        if int(state["t"]) == 5:
            raise RuntimeError("device on fire")
        return inner(state, key)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop = Loop(exploding, evaluate, backoff=Backoff(noise=0.0))
        r = loop.run(init_state(), jax.random.key(0), max_windows=12)
    assert r.reason.startswith("error: RuntimeError") and isinstance(r.error, RuntimeError)
    assert r.best_window == 4 and int(r.state["t"]) == 5


def test_resume_continues_from_the_saved_window(tmp_path):
    ck = tmp_path / "ckpt"
    first = Loop(
        make_step(), evaluate, backoff=Backoff(noise=0.0), checkpoint_dir=str(ck), save_every=1
    )
    r1 = first.run(init_state(), jax.random.key(0), max_windows=5)
    assert r1.windows == 5
    rec = Recorder()
    second = Loop(
        make_step(),
        evaluate,
        backoff=Backoff(noise=0.0),
        checkpoint_dir=str(ck),
        save_every=1,
        callbacks=[rec],
    )
    r2 = second.run(init_state(), jax.random.key(0), max_windows=9)
    assert rec.calls["on_window_end"] == 4  # windows 5..8 only
    assert r2.windows == 9 and int(r2.state["t"]) == 9
    assert [h["window"] for h in r2.history] == list(range(9))  # history carried over


def test_callbacks_fire_the_right_number_of_times_and_a_raising_one_is_harmless():
    rec = Recorder()

    class Broken(Callback):
        def on_window_end(self, loop, window, metrics):
            raise ValueError("bug in user code")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = Loop(make_step(), evaluate, callbacks=[Broken(), rec])
        r = loop.run(init_state(), jax.random.key(0), max_windows=6)
    assert rec.calls["on_loop_start"] == 1 and rec.calls["on_loop_stop"] == 1
    assert rec.calls["on_window_end"] == 6
    assert rec.calls["on_improvement"] == r.evaluations  # every evaluation improves here
    assert len(r.callback_errors) == 6 and r.reason == "budget"
    assert any("bug in user code" in str(w.message) for w in caught)


def test_advisor_on_plateau_is_clamped_and_a_failing_one_is_logged():
    frozen = jax.jit(lambda s, k: (s, {"loss": jnp.float32(0)}))

    class Wild:
        def __init__(self):
            self.contexts = []

        def advise(self, context):
            self.contexts.append(context)
            return hj.Advice({"learning_rate": 50.0, "unknown": 1.0}, "too hot")

    wild = Wild()
    applied = []

    class Applied(Callback):
        def on_hparams_update(self, loop, window, hparams, source):
            applied.append((source, hparams))

    loop = Loop(
        frozen,
        evaluate,
        backoff=Backoff(plateau=2, dormant=40),
        advisor=wild,
        space=SPACE,
        callbacks=[Applied()],
    )
    loop.run(init_state(), jax.random.key(0), max_windows=6)
    assert len(wild.contexts) == 1 and "history" in wild.contexts[0]
    # clamped to the space; the unknown name is dropped
    assert applied == [("advisor", {"learning_rate": pytest.approx(1.0)})]

    class Failing:
        def advise(self, context):
            raise ConnectionError("no network")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop = Loop(frozen, evaluate, backoff=Backoff(plateau=2, dormant=40), advisor=Failing())
        r = loop.run(init_state(), jax.random.key(0), max_windows=6)
    assert r.reason == "budget" and any("no network" in e for e in r.callback_errors)


def test_tuner_in_the_loop_changes_hparams_without_retrace():
    traces = []
    inner = make_step()

    def counted(state, key):
        return inner(state, key)

    @jax.jit
    def step(state, key):
        traces.append(1)
        return counted(state, key)

    tuner = hj.guard(hj.finite_difference(SPACE), warmup=1, space=SPACE)
    rec = Recorder()
    r = Loop(step, evaluate, tuner=tuner, space=SPACE, callbacks=[rec]).run(
        init_state(), jax.random.key(0), max_windows=10
    )
    assert len(traces) == 1
    assert rec.calls["on_hparams_update"] >= 5
    lrs = {round(h, 6) for h in [r.hparams["learning_rate"]]}
    assert lrs != {0.1}


def test_a_divergence_before_any_finite_score_restarts_from_the_initial_state():
    inner = make_step()
    calls = []

    def step(state, key):
        state, metrics = inner(state, key)
        calls.append(1)
        if len(calls) == 1:  # the first window blows the weights up
            state = {**state, "w": state["w"] * jnp.nan}
        return state, metrics

    rec = Recorder()
    tuner = hj.guard(hj.fixed(), warmup=0, space=SPACE)
    seen = []

    lrs = []

    class Watch(Callback):
        def on_rollback(self, loop, window, best_window):
            seen.append(best_window)

        def on_hparams_update(self, loop, window, hparams, source):
            lrs.append(hparams["learning_rate"])

    r = Loop(step, evaluate, tuner=tuner, space=SPACE, callbacks=[rec, Watch()]).run(
        init_state(), jax.random.key(0), max_windows=6
    )
    assert seen == [-1]  # rolled back to the start: nothing had been scored
    assert lrs[0] == pytest.approx(0.01)  # 0.1 shrunk after diverging
    assert np.isfinite(r.best_score) and np.all(np.isfinite(np.asarray(r.state["w"])))


def test_report_lists_the_summary(capsys):
    _, r = run_until(make_step())
    s = r.report()
    out = capsys.readouterr().out
    for key in ("reason", "best_score", "generalisation_gap", "rollbacks", "regime", "hparams"):
        assert key in s and key in out
    assert s["generalisation_gap"] == pytest.approx(0.1 * -r.best_score, rel=1e-4)


def test_loop_validation():
    with pytest.raises(TypeError, match="callables"):
        Loop(None, evaluate)
    with pytest.raises(ValueError, match="save_every"):
        Loop(make_step(), evaluate, save_every=0)
    with pytest.raises(TypeError, match="advise"):
        Loop(make_step(), evaluate, advisor=object())
    with pytest.raises(ValueError, match="max_windows"):
        Loop(make_step(), evaluate).run(init_state(), jax.random.key(0), 0)


def test_spawns_build_a_weighted_ensemble_capped_at_max_size():
    step = jax.jit(lambda s, k: ({"t": s["t"] + 1}, {"loss": jnp.float32(0)}))
    scripted = iter([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0] + [3.0] * 50)
    loop = Loop(
        step,
        lambda s: {"score": next(scripted)},  # a plateau after every gain
        backoff=Backoff(plateau=1, dormant=2, noise=0.0, max_interval=1),
        controller=MetaController(max_spawns=3, flat=100.0),  # always spawn when dormant
        max_ensemble_size=2,
    )
    r = loop.run({"t": jnp.zeros((), jnp.int32)}, jax.random.key(0), max_windows=80)
    assert r.spawns == 3 and r.reason == "spawn budget spent"
    assert len(r.ensemble) == 2 and len(r.ensemble_states) == 2  # 4 variants, capped at 2
    scores = [m["score"] for m in r.ensemble]
    assert scores == [3.0, 2.0] and scores[0] == r.best_score
    weights = [m["weight"] for m in r.ensemble]
    assert sum(weights) == pytest.approx(1.0, abs=1e-6) and weights[0] > weights[1]
    assert int(r.ensemble_states[0]["t"]) == int(r.state["t"])  # the best member first
    assert len(r.summary()["ensemble"]) == 2


def test_record_run_writes_rows_transitions_rollbacks_advice_and_resumes(tmp_path):
    class Calm:
        def advise(self, context):
            return hj.Advice({"learning_rate": 0.05}, "plateau: cool down", ("plateau",))

    def run():
        records = hj.records.RunRecords(tmp_path, meta={"hparams": ["learning_rate"]})
        loop = Loop(
            make_step(sabotage=(6, 7, 8, 9)),
            evaluate,
            backoff=Backoff(patience=2, noise=0.0, plateau=3, dormant=60),
            advisor=Calm(),
            space=SPACE,
            callbacks=[hj.loop.RecordRun(records)],
            restore=lambda now, best: {**best, "t": now["t"]},  # the clock moves on
        )
        return loop.run(init_state(), jax.random.key(0), max_windows=40)

    result = run()
    run_dir = hj.records.read_run(tmp_path)
    rows = run_dir["rows"]["run"]
    assert [r["window"] for r in rows] == [h["window"] for h in result.history]
    assert {"loss", "score", "train_score", "phase"} <= set(rows[0])
    assert rows[0]["score"] == pytest.approx(result.history[0]["score"])
    kinds = [e["kind"] for e in run_dir["events"]]
    assert {"transition", "improvement", "degradation", "rollback"} <= set(kinds)
    advice = [e for e in run_dir["events"] if e["kind"] == "advice"]
    assert advice and advice[0]["rationale"] == "plateau: cool down"
    assert run_dir["summaries"]["run"]["best_window"] == result.best_window
    assert run_dir["best"]["trial"] == "run"
    run()  # the same run again on the same directory: nothing duplicated
    again = hj.records.read_run(tmp_path)
    windows = [r["window"] for r in again["rows"]["run"]]
    assert windows == [r["window"] for r in rows], (windows, [r["window"] for r in rows])
    assert len(again["events"]) == len(kinds)
