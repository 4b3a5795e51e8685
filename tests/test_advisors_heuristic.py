"""Offline advice, part two: the heuristic consultant, supervisor and analyst that act
on the diagnosis. Plain Python, no compilation."""

from __future__ import annotations

import math

import pytest
from _curves import (
    CLEAN,
    EXPLODING,
    OVERFIT,
    SLOW,
)

import hagfish_jax as hj
from hagfish_jax.shell.advisors.context import (
    Advice,
    AdviceContext,
    Analyst,
    Consultant,
    Supervisor,
)
from hagfish_jax.shell.advisors.diagnosis import (
    DIVERGENCE,
    FLAGS,
    KEYWORDS,
    OSCILLATION,
    OVERFITTING,
    PLATEAU,
    SLOW_CONVERGENCE,
    UNDERFITTING,
)
from hagfish_jax.shell.advisors.heuristic import (
    Heuristic,
    HeuristicAnalyst,
    HeuristicConsultant,
    HeuristicSupervisor,
)
from hagfish_jax.shell.advisors.validate import validate

SPACE = hj.Space(
    optimizer=hj.Choice(["adam", "sgd"]),
    learning_rate=hj.LogUniform(1e-4, 1e-1),
    batch_size=hj.Choice([32, 64, 128, 256, 512]),
    weight_decay=hj.LogUniform(1e-5, 1e-1),
    label_smoothing=hj.Uniform(0.0, 0.2),
)
HP = {
    "optimizer": "sgd",
    "learning_rate": 1e-2,
    "batch_size": 128,
    "weight_decay": 1e-4,
    "label_smoothing": 0.05,
}


def ctx(flags=(), hparams=None, **kw):
    return AdviceContext(SPACE, dict(HP if hparams is None else hparams), flags=tuple(flags),
                         **kw)


def inside(hparams, space=SPACE):
    return validate(hparams, space).adjustments == [] and set(hparams) <= set(space.names)


def value(advice, name, hparams=HP):
    return advice.hparams.get(name, hparams[name])


@pytest.mark.parametrize("style", ["cautious", "bold"])
def test_each_flag_moves_the_documented_way(style):
    c = HeuristicConsultant(style, seed=0)
    lr, wd, ls, bs = HP["learning_rate"], HP["weight_decay"], HP["label_smoothing"], 128

    a = c.propose(ctx([DIVERGENCE]), None)
    assert value(a, "learning_rate") < lr and value(a, "optimizer") == "adam"
    a = c.propose(ctx([OVERFITTING]), None)
    assert value(a, "weight_decay") > wd and value(a, "label_smoothing") > ls
    assert value(a, "learning_rate") == lr
    a = c.propose(ctx([UNDERFITTING]), None)
    assert value(a, "learning_rate") > lr and value(a, "weight_decay") < wd
    a = c.propose(ctx([PLATEAU]), None)
    assert value(a, "learning_rate") < lr and value(a, "batch_size") == bs
    a = c.propose(ctx([OSCILLATION]), None)
    assert value(a, "learning_rate") < lr and value(a, "batch_size") == 256
    a = c.propose(ctx([SLOW_CONVERGENCE]), None)
    assert value(a, "learning_rate") > lr and value(a, "batch_size") == 64
    assert value(a, "optimizer") == "adam"
    a = c.propose(ctx([PLATEAU], {**HP, "optimizer": "sgd"}), None)
    assert value(a, "optimizer") == "sgd"  # only divergence / slow convergence switch it

    for flag in FLAGS:
        a = c.propose(ctx([flag]), None)
        assert a.hparams and inside(a.hparams), (flag, a)
        assert a.flags == (flag,)
        assert flag in a.rationale


def test_bold_steps_are_larger():
    for flag, name in [(DIVERGENCE, "learning_rate"), (PLATEAU, "learning_rate"),
                       (SLOW_CONVERGENCE, "learning_rate"), (OVERFITTING, "weight_decay")]:
        cautious = HeuristicConsultant("cautious").propose(ctx([flag]), None).hparams[name]
        bold = HeuristicConsultant("bold").propose(ctx([flag]), None).hparams[name]
        assert abs(math.log(bold / HP[name])) > abs(math.log(cautious / HP[name])), flag
    a = HeuristicConsultant("cautious").propose(ctx([DIVERGENCE]), None)
    assert a.hparams["learning_rate"] == pytest.approx(HP["learning_rate"] / 3)
    a = HeuristicConsultant("bold").propose(ctx([DIVERGENCE]), None)
    assert a.hparams["learning_rate"] == pytest.approx(HP["learning_rate"] / 10)


def test_rationale_names_the_change():
    a = HeuristicConsultant().propose(ctx([OVERFITTING]), None)
    assert "overfitting: weight_decay 0.0001 -> 0.0002" in a.rationale
    assert "label_smoothing 0.05 -> 0.1" in a.rationale


def test_clamped_at_the_bounds():
    hp = {**HP, "learning_rate": 1e-1, "optimizer": "adam"}
    for style in ("cautious", "bold"):
        a = HeuristicConsultant(style).propose(ctx([SLOW_CONVERGENCE], hp), None)
        assert value(a, "learning_rate", hp) == 1e-1
        assert a.hparams["batch_size"] == 64 and inside(a.hparams)
    hp = {**HP, "weight_decay": 1e-1, "label_smoothing": 0.2, "batch_size": 512}
    a = HeuristicConsultant("bold").propose(ctx([OVERFITTING, OSCILLATION], hp), None)
    assert value(a, "weight_decay", hp) == 1e-1 and value(a, "label_smoothing", hp) == 0.2
    assert value(a, "batch_size", hp) == 512 and a.hparams["learning_rate"] < 1e-2
    assert inside(a.hparams)


def test_names_missing_from_the_space_are_skipped():
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1), dropout_rate=hj.Uniform(0.0, 0.5))
    hp = {"learning_rate": 1e-3, "dropout_rate": 0.2, "momentum": 0.9}
    c = HeuristicConsultant()
    a = c.propose(AdviceContext(space, hp, flags=(OVERFITTING,)), None)
    assert a.hparams == {"dropout_rate": pytest.approx(0.3)}
    a = c.propose(AdviceContext(space, hp, flags=(UNDERFITTING,)), None)
    assert a.hparams["learning_rate"] > 1e-3 and a.hparams["dropout_rate"] < 0.2
    a = c.propose(AdviceContext(space, hp, flags=(OSCILLATION,)), None)  # no batch_size
    assert set(a.hparams) == {"learning_rate"} and inside(a.hparams, space)


def test_no_flags_explores_deterministically():
    def advise(seed, rnd=0):
        return Heuristic(seed).advise(ctx(round=rnd))

    first = advise(0)
    assert first.hparams and inside(first.hparams)
    assert {**HP, **first.hparams} != HP
    assert advise(0) == first
    assert any(advise(s).hparams != first.hparams for s in range(1, 5))
    assert any(advise(0, r).hparams != first.hparams for r in range(1, 5))
    a = HeuristicConsultant(seed=3).propose(ctx(), None)
    assert a.hparams and "exploring" in a.rationale and a.flags == ()
    # unknown flags (a failed trial) change nothing by rule: explore as well
    a = HeuristicConsultant(seed=3).propose(ctx(["failed"]), None)
    assert a.hparams and inside(a.hparams)


def test_explores_when_the_rules_are_stuck_at_a_bound():
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
    a = HeuristicConsultant().propose(
        AdviceContext(space, {"learning_rate": 1e-1}, flags=(SLOW_CONVERGENCE,)), None
    )
    assert a.hparams["learning_rate"] < 1e-1 and inside(a.hparams, space)


def test_starts_from_the_best_trial_when_the_latest_was_worse():
    best = {**HP, "learning_rate": 1e-3, "batch_size": 64}
    latest = {**HP, "learning_rate": 3e-2}
    trials = [
        {"hparams": HP, "val_accuracy": 0.7, "val_loss": 0.9},
        {"hparams": best, "val_accuracy": 0.9, "val_loss": 0.3},
        {"hparams": latest, "val_accuracy": 0.6, "val_loss": 1.2},
    ]
    a = HeuristicConsultant().propose(ctx([PLATEAU], latest, trials=trials), None)
    assert a.hparams["learning_rate"] == pytest.approx(5e-4)
    assert a.hparams["batch_size"] == 64
    assert "trial 1" in a.rationale
    # a failed latest trial (no score) is worse than any scored one
    failed = [*trials[:2], {"hparams": latest, "val_accuracy": None, "status": "failed"}]
    a = HeuristicConsultant().propose(ctx([PLATEAU], latest, trials=failed), None)
    assert a.hparams["learning_rate"] == pytest.approx(5e-4)
    # the latest trial is the best: start from the values in force
    improved = [*trials[:2], {"hparams": latest, "val_accuracy": 0.95, "val_loss": 0.2}]
    a = HeuristicConsultant().propose(ctx([PLATEAU], latest, trials=improved), None)
    assert a.hparams == {"learning_rate": pytest.approx(1.5e-2)}


def test_cautious_meets_the_other_halfway():
    other = Advice({"learning_rate": 1e-3, "weight_decay": 1e-3}, "", (PLATEAU,))
    a = HeuristicConsultant("cautious").propose(ctx([PLATEAU]), other)
    assert a.hparams["learning_rate"] == pytest.approx(math.sqrt(5e-3 * 1e-3))
    assert "weight_decay" not in a.hparams  # only names both changed
    b = HeuristicConsultant("bold").propose(ctx([PLATEAU]), other)
    assert b.hparams["learning_rate"] == pytest.approx(1e-2 / 3)


def test_unknown_style():
    with pytest.raises(ValueError, match="style"):
        HeuristicConsultant("reckless")


# ------------------------------------------------------------------ supervisor
def test_supervisor_merge_rules():
    s = HeuristicSupervisor()
    p1 = Advice({"learning_rate": 1e-3, "label_smoothing": 0.0, "batch_size": 32,
                 "optimizer": "sgd", "weight_decay": 1e-4}, "", (PLATEAU,))
    p2 = Advice({"learning_rate": 1e-1, "label_smoothing": 0.1, "batch_size": 512,
                 "optimizer": "adam"}, "", (OSCILLATION, PLATEAU))
    out = s.decide(ctx(), [p1, p2])
    assert out.hparams["learning_rate"] == pytest.approx(1e-2)  # geometric mean
    assert out.hparams["label_smoothing"] == pytest.approx(0.05)  # mean
    assert out.hparams["batch_size"] == 256  # nearest to 272
    assert out.hparams["optimizer"] == "sgd"  # a tie: the first proposal's
    assert out.hparams["weight_decay"] == 1e-4  # proposed once: taken as proposed
    assert out.flags == (OSCILLATION, PLATEAU)
    assert inside(out.hparams)


def test_supervisor_ties_and_majorities():
    s = HeuristicSupervisor()
    a, b = Advice({"batch_size": 64}), Advice({"batch_size": 128})
    assert s.decide(ctx(), [a, b]).hparams["batch_size"] == 64  # 96: tie, first wins
    assert s.decide(ctx(), [b, a]).hparams["batch_size"] == 128
    votes = [Advice({"optimizer": v}) for v in ("sgd", "adam", "adam")]
    assert s.decide(ctx(), votes).hparams["optimizer"] == "adam"
    space = hj.Space(width=hj.IntUniform(1, 10))
    out = s.decide(AdviceContext(space, {"width": 5}), [Advice({"width": 2}),
                                                        Advice({"width": 7})])
    assert out.hparams == {"width": 4} or out.hparams == {"width": 5}
    assert isinstance(out.hparams["width"], int)


def test_supervisor_validates():
    s = HeuristicSupervisor()
    out = s.decide(ctx(), [Advice({"learning_rate": 5.0, "momentum": 0.9, "optimizer": 3})])
    assert out.hparams == {"learning_rate": 1e-1}
    assert s.decide(ctx(), []).hparams == {}


# ------------------------------------------------------------------ analyst, advisor
def test_analyst_keywords():
    an = HeuristicAnalyst()
    analysis = an.analyse(AdviceContext(SPACE, HP, OVERFIT))
    assert analysis.keywords == KEYWORDS[OVERFITTING]
    assert "overfitting" in analysis.text and "epoch 8" in analysis.text
    # flags in the context win over the curves; keywords unique, in order
    analysis = an.analyse(AdviceContext(SPACE, HP, CLEAN, flags=(DIVERGENCE, OSCILLATION)))
    assert analysis.keywords[: len(KEYWORDS[DIVERGENCE])] == KEYWORDS[DIVERGENCE]
    assert len(set(analysis.keywords)) == len(analysis.keywords)
    assert set(analysis.keywords) == set(KEYWORDS[DIVERGENCE]) | set(KEYWORDS[OSCILLATION])
    assert "divergence" in analysis.text
    clean = an.analyse(AdviceContext(SPACE, HP, CLEAN))
    assert clean.keywords == () and "no problem" in clean.text


def test_heuristic_advisor_diagnoses_then_advises():
    h = Heuristic(seed=0)
    advice = h.advise(AdviceContext(SPACE, HP, EXPLODING))
    assert advice.flags == (DIVERGENCE,)
    assert advice.hparams["learning_rate"] < HP["learning_rate"]
    assert advice.hparams["optimizer"] == "adam" and inside(advice.hparams)
    cautious, bold = HP["learning_rate"] / 3, HP["learning_rate"] / 10
    assert bold < advice.hparams["learning_rate"] < cautious
    advice = h.advise(AdviceContext(SPACE, HP, OVERFIT))
    assert OVERFITTING in advice.flags and advice.hparams["weight_decay"] > HP["weight_decay"]
    assert isinstance(h.propose(AdviceContext(SPACE, HP, SLOW), None), Advice)
    assert h.analyse(AdviceContext(SPACE, HP, SLOW)).keywords == KEYWORDS[SLOW_CONVERGENCE]


def test_roles_satisfy_the_protocols():
    assert isinstance(HeuristicConsultant(), Consultant)
    assert isinstance(HeuristicSupervisor(), Supervisor)
    assert isinstance(HeuristicAnalyst(), Analyst)
    h = Heuristic()
    assert isinstance(h, Consultant) and isinstance(h, Supervisor) and isinstance(h, Analyst)
