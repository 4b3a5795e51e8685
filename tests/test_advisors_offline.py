"""Behaviour of the offline researcher (stemmer, BM25, snippets, SearchResearcher) and
of the heuristic supervisor, analyst and advisor."""

from __future__ import annotations

import math
import warnings

import pytest

import hagfish_jax as hj
from hagfish_jax.shell.advisors.context import Advice, AdviceContext, Result
from hagfish_jax.shell.advisors.heuristic import (
    Heuristic,
    HeuristicAnalyst,
    HeuristicSupervisor,
)
from hagfish_jax.shell.advisors.research import BM25, SearchResearcher, _snippet, _stem


# ------------------------------------------------------------------ stemmer
@pytest.mark.parametrize(
    "word, stem",
    [
        ("abs", "abs"),  # three characters: left as they are
        ("gas", "gas"),
        ("ties", "tie"),  # a four-letter -ies word loses only its s
        ("tries", "try"),  # a final y stays when only three characters remain
        ("coding", "cod"),  # an ending goes when exactly three characters remain
        ("coded", "cod"),
        ("modelling", "modell"),  # a doubled l is not undoubled
        ("overfitting", "overfit"),
        ("payed", "pay"),
    ],
)
def test_the_stemmer_at_its_boundaries(word, stem):
    assert _stem(word) == stem


# ------------------------------------------------------------------ BM25
def test_bm25_accepts_b_of_exactly_one():
    index = BM25(["the cat sat", "a dog barked"], b=1.0)
    assert index.b == 1.0 and index.top("cat", 2) == [0]
    with pytest.raises(ValueError, match="b must be"):
        BM25(["x"], b=1.01)


def test_bm25_over_documents_of_only_stop_words_scores_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = BM25(["the a", "of and"])
        assert list(index.scores("the cat")) == [0.0, 0.0]


# ------------------------------------------------------------------ snippets
def test_a_text_of_exactly_the_limit_is_not_cut():
    text = "x" * 400
    assert _snippet(text) == text
    assert _snippet(text + "y").endswith("...")


def test_a_long_text_is_cut_at_a_word_boundary():
    text = " ".join(["word"] * 200)
    cut = _snippet(text, limit=100)
    assert cut.endswith("...") and len(cut) <= 100
    assert cut[:-3].split(" ") == ["word"] * len(cut[:-3].split(" "))
    assert len(cut) > 90


# ------------------------------------------------------------------ SearchResearcher
def test_a_result_with_fields_that_are_not_text_is_skipped():
    researcher = SearchResearcher(lambda q: [Result(1, 2, 3), Result("A", "b", "s")])
    assert researcher.research(["x"]) == (Result("A", "b", "s"),)


def test_a_tuple_of_four_strings_is_skipped():
    researcher = SearchResearcher(lambda q: [("A", "b", "s", "extra"), ("B", "c", "t")])
    assert researcher.research(["x"]) == (Result("B", "c", "t"),)


def test_k_zero_is_accepted_and_returns_nothing():
    researcher = SearchResearcher(lambda q: [("A", "b", "s"), ("B", "c", "t")], k=0)
    assert researcher.research(["plateau"]) == ()
    with pytest.raises(ValueError, match="k must be"):
        SearchResearcher(k=-1)


# ------------------------------------------------------------------ heuristic supervisor
def _ctx(space, hparams, **kw):
    return AdviceContext(space, dict(hparams), **kw)


def test_an_integer_merge_is_reported_as_the_integer_it_applies():
    space = hj.Space(layers=hj.IntUniform(1, 10))
    context = _ctx(space, {"layers": 1})
    advice = HeuristicSupervisor().decide(
        context, [Advice({"layers": 2}, "a"), Advice({"layers": 3}, "b")]
    )
    assert advice.hparams == {"layers": 2}
    assert "layers 1 -> 2 (from 2, 3)" in advice.rationale


def test_agreeing_proposals_are_merged_without_listing_them():
    space = hj.Space(layers=hj.IntUniform(1, 10))
    context = _ctx(space, {"layers": 1})
    advice = HeuristicSupervisor().decide(
        context, [Advice({"layers": 3}, "a"), Advice({"layers": 3}, "b")]
    )
    assert advice.rationale == "merged 2 proposals: layers 1 -> 3"
    one = HeuristicSupervisor().decide(context, [Advice({"layers": 4}, "a")])
    assert one.rationale == "merged 1 proposal: layers 1 -> 4"


# ------------------------------------------------------------------ heuristic analyst
def _history(n=20):
    rows = []
    for e in range(n):
        rows.append({
            "epoch": e,
            "train_loss": 0.05 + 2 * math.exp(-e / 4),
            "val_loss": 0.6 + 0.004 * (e - 8) ** 2,
            "train_accuracy": 1.0 - 0.5 * math.exp(-e / 3),
            "val_accuracy": 0.85 - 0.4 * math.exp(-e / 3),
        })
    return rows


def test_the_analyst_fills_in_features_from_the_history_when_flags_are_given():
    context = _ctx(None, {}, history=_history(), flags=("plateau",))
    text = HeuristicAnalyst().analyse(context).text
    assert "plateau" in text
    assert "Best validation loss" in text


def test_the_analyst_keeps_given_features_when_it_diagnoses_flags():
    context = _ctx(None, {}, history=_history(), features={"best_val_accuracy": 0.123})
    text = HeuristicAnalyst().analyse(context).text
    assert "Best validation accuracy 0.123." in text
    assert "Best validation loss" not in text


def test_the_analyst_leaves_out_features_that_are_not_finite_or_half_known():
    features = {"best_val_loss": float("nan"), "final_train_loss": 0.5}
    text = HeuristicAnalyst().analyse(_ctx(None, {}, features=features)).text
    assert text == "Diagnosis: no problem found in the curves."


# ------------------------------------------------------------------ heuristic advisor
def test_flags_given_in_the_context_are_not_replaced_by_a_diagnosis():
    context = _ctx(None, {}, history=_history(), flags=("plateau",))
    diagnosed = Heuristic._diagnosed(context)
    assert diagnosed is context
    assert Heuristic._diagnosed(_ctx(None, {}, history=_history())).flags != ()


def test_the_bold_consultant_is_seeded_one_above_the_cautious():
    h = Heuristic(seed=7)
    assert h.cautious.seed == 7 and h.bold.seed == 8
