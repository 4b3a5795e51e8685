"""The advisors' council inside ``hj.Loop``: asked on a plateau, for one run and for a
population; its advice is checked, clamped and applied without a retrace."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax.shell.advisors import AdviceContext, Council
from hagfish_jax.shell.loop import Backoff, Callback, Loop
from hagfish_jax.tasks import classification, digits


@pytest.fixture(scope="module")
def task():
    return classification.make_task(
        digits.load_digits_split(0, train_fraction=0.25), hidden=(16,),
        steps_per_window=2, optimizers=("adam", "sgd"),
    )


class Seen(Callback):
    def __init__(self):
        self.advice, self.updates = [], []

    def on_advice(self, loop, window, advice):
        self.advice.append(advice)

    def on_hparams_update(self, loop, window, hparams, source):
        self.updates.append((source, dict(hparams)))


class Spy(Council):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.contexts = []

    def advise(self, context):
        self.contexts.append(context)
        return super().advise(context)


@pytest.mark.parametrize("population", [None, 4])
def test_council_advice_on_plateau_is_applied_inside_the_space(task, population):
    seen, council = Seen(), Spy(seed=3)
    loop = Loop(task=task, population=population, advisor=council,
                backoff=Backoff(plateau=2, dormant=60), callbacks=[seen])
    hp = {"learning_rate": 1e-4}  # barely moves: the score plateaus at once
    loop.run(key=jax.random.key(0), max_windows=8, hparams=hp)
    assert council.contexts, "the plateau asked the council"
    ctx = council.contexts[0]
    assert isinstance(ctx, AdviceContext) and ctx.space is task.space
    assert ctx.hparams["optimizer"] in ("adam", "sgd")  # a choice as its value
    assert ctx.history and {"val_loss", "train_loss", "val_score"} <= set(ctx.history[-1])
    assert ctx.budget_left is not None and ctx.budget_left < 8
    assert seen.advice and all(isinstance(a, hj.Advice) for a in seen.advice)
    applied = [hp for source, hp in seen.updates if source == "advisor"]
    assert applied, "the council's advice reached the state"
    for values in applied:
        for name, value in values.items():
            assert name in task.space.dynamic
            dim = task.space[name]
            if isinstance(dim, hj.Choice):
                assert value in (0.0, 1.0)  # the optimizer's index, inside jit
            else:
                assert dim.low <= value <= dim.high


def test_council_switching_the_optimizer_in_the_loop_does_not_retrace(task):
    class SwitchToSgd:
        def advise(self, context):
            return hj.Advice({"optimizer": "sgd", "batch_size": 512, "learning_rate": 9.0})

    seen = Seen()
    loop = Loop(task=task, advisor=SwitchToSgd(), backoff=Backoff(plateau=2, dormant=60),
                callbacks=[seen])
    loop.run(key=jax.random.key(0), max_windows=8, hparams={"learning_rate": 1e-4})
    applied = [hp for source, hp in seen.updates if source == "advisor"]
    assert applied and applied[0]["optimizer"] == 1.0
    assert "batch_size" not in applied[0]  # not in the task's space: dropped
    assert applied[0]["learning_rate"] == pytest.approx(task.space["learning_rate"].high)
    train = hj.program.compiled(task)[0]
    assert train._cache_size() == 1


def test_the_context_still_reads_like_the_old_dict():
    ctx = AdviceContext(None, {"learning_rate": 0.1}, [{"score": 0.5}], round=7)
    assert ctx["hparams"]["learning_rate"] == 0.1 and "history" in ctx
    assert ctx["window"] == 7 and ctx.get("missing") is None
    with pytest.raises(KeyError):
        ctx["missing"]
    assert np.isclose(ctx[1]["learning_rate"], 0.1)  # still a tuple underneath
