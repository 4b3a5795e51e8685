"""The researcher (BM25 over the shipped knowledge base, SearchResearcher) and the
Sanitizer that anonymises agent-facing text."""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import pytest

from hagfish_jax.shell.advisors.context import Researcher, Result
from hagfish_jax.shell.advisors.research import (
    BM25,
    ENTRIES,
    SOURCE_PREFIX,
    SearchResearcher,
    offline_search,
    tokenize,
)
from hagfish_jax.shell.advisors.sanitize import Sanitizer


# ------------------------------------------------------------------ tokenizer
def test_tokenize_lowercases_drops_stop_words_and_strips_suffixes():
    assert tokenize("The Loss is EXPLODING") == ["loss", "explod"]
    assert tokenize("overfit overfits overfitting overfitted") == ["overfit"] * 4
    assert len(set(tokenize("oscillation oscillations oscillating oscillate"))) == 1
    assert tokenize("loss losses") == ["loss", "loss"]
    assert tokenize("lr=1e-3, batch_size 128") == ["lr", "1e", "3", "batch", "siz", "128"]


# ------------------------------------------------------------------ BM25
def test_bm25_rare_term_outranks_common_term():
    docs = ["alpha beta", "alpha gamma", "alpha delta", "alpha epsilon"]
    index = BM25(docs)
    # "gamma" is in one document, "alpha" in all: the rare term decides the ranking
    assert index.top("alpha gamma", k=4)[0] == 1
    scores = index.scores("alpha gamma")
    assert scores[1] > scores[0] == scores[2] == scores[3] > 0.0


def test_bm25_length_normalisation():
    long_doc = "target " + " ".join(f"filler{i}" for i in range(30))
    docs = [long_doc, "target short", "other words here"]
    index = BM25(docs)
    assert index.top("target", k=3) == [1, 0]
    # without length normalisation (b=0) the two documents tie: document order decides
    flat = BM25(docs, b=0.0)
    s = flat.scores("target")
    assert s[0] == pytest.approx(s[1])
    assert flat.top("target", k=3) == [0, 1]


def test_bm25_unknown_query_gives_no_hits():
    index = BM25(["alpha beta", "gamma delta"])
    assert index.top("zeta omega", k=5) == []
    assert index.top("the and of", k=5) == []  # stop words only
    np.testing.assert_array_equal(index.scores("zeta"), np.zeros(2))
    assert index.top("alpha", k=0) == []
    assert BM25([]).top("alpha", k=3) == []
    assert BM25([]).scores("alpha").shape == (0,)


def test_bm25_score_matches_hand_computation():
    docs = ["apple apple banana", "banana cherry", "cherry date elder fig"]
    k1, b = 1.5, 0.75
    index = BM25(docs, k1=k1, b=b)
    # document 0 for "apple banana": lengths 3, 2, 4 -> average 3
    n_docs, avg = 3, 3.0
    idf_apple = math.log(1 + (n_docs - 1 + 0.5) / (1 + 0.5))
    idf_banana = math.log(1 + (n_docs - 2 + 0.5) / (2 + 0.5))
    norm = k1 * (1 - b + b * 3 / avg)
    expected = idf_apple * 2 * (k1 + 1) / (2 + norm) + idf_banana * 1 * (k1 + 1) / (1 + norm)
    assert index.scores("apple banana")[0] == pytest.approx(expected, rel=1e-12)
    # document 1 (length 2) for "banana"
    norm1 = k1 * (1 - b + b * 2 / avg)
    assert index.scores("banana")[1] == pytest.approx(idf_banana * (k1 + 1) / (1 + norm1))
    # a repeated query term counts once
    assert index.scores("apple apple")[0] == pytest.approx(index.scores("apple")[0])


def test_bm25_ties_keep_document_order():
    index = BM25(["x one", "y two", "x three", "x four"])
    assert index.top("x", k=2) == [0, 2]
    assert index.top("x", k=10) == [0, 2, 3]


def test_bm25_rejects_bad_parameters():
    with pytest.raises(ValueError):
        BM25(["a"], k1=-1.0)
    with pytest.raises(ValueError):
        BM25(["a"], b=1.5)


# ------------------------------------------------------------------ knowledge base
@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ("exploding loss learning rate too high", "exploding-loss"),
        ("validation loss plateau", "plateau"),
        ("overfitting train validation gap", "overfitting"),
        ("underfitting high training loss", "underfitting"),
        ("oscillating validation loss noisy", "oscillation"),
        ("slow convergence loss still decreasing", "slow-convergence"),
        ("large batch size generalization", "large-batch"),
    ],
)
def test_offline_search_top_hit_matches_the_diagnosis(query, slug):
    hits = offline_search(query)
    assert 1 <= len(hits) <= 3
    assert hits[0].source == SOURCE_PREFIX + slug
    assert all(isinstance(h, Result) for h in hits)


def test_knowledge_base_shape():
    slugs = [e.slug for e in ENTRIES]
    assert len(slugs) == len(set(slugs)) >= 20
    for entry in ENTRIES:
        assert entry.title and entry.topics and len(entry.text) > 100
    covered = {
        "exploding-loss",
        "plateau",
        "overfitting",
        "underfitting",
        "oscillation",
        "slow-convergence",
        "large-batch",
        "small-batch-noise",
        "adam-vs-sgd",
        "weight-decay",
        "label-smoothing",
        "dropout",
        "lr-warmup",
        "lr-schedules",
    }
    assert covered <= set(slugs)


def test_offline_search_snippets_and_limits():
    hits = offline_search("weight decay overfitting dropout augmentation", k=10)
    assert len(hits) == 10
    assert all(len(h.snippet) <= 400 for h in hits)
    assert offline_search("zzz qqq") == []
    assert offline_search("overfitting", k=0) == []


# ------------------------------------------------------------------ SearchResearcher
def test_search_researcher_coerces_and_dedups():
    queries = []

    def search(query):
        queries.append(query)
        return [
            Result("A", "first", "s1"),
            ("B", "second", "s2"),
            {"title": "C", "snippet": "third", "source": "s3", "extra": 1},
            "junk",
            42,
            ("too", "short"),
            {"title": "D", "snippet": None, "source": "s4"},
            ["A", "repeat of A", "s1"],  # same (title, source) as the first: dropped
            ["A", "same title, other source", "s5"],
        ]

    researcher = SearchResearcher(search, k=10)
    assert isinstance(researcher, Researcher)
    out = researcher.research(["loss plateau", " ", "lr"], context=None)
    assert queries == ["loss plateau lr"]
    assert out == (
        Result("A", "first", "s1"),
        Result("B", "second", "s2"),
        Result("C", "third", "s3"),
        Result("A", "same title, other source", "s5"),
    )
    assert SearchResearcher(search, k=2).research(["x"], None) == out[:2]


def test_search_researcher_single_hit_and_odd_returns():
    assert SearchResearcher(lambda q: Result("T", q, "s")).research(["a"], None) == (
        Result("T", "a", "s"),
    )
    assert SearchResearcher(lambda q: {"title": "T", "snippet": q, "source": "s"}).research(
        ["b"], None
    ) == (Result("T", "b", "s"),)
    assert SearchResearcher(lambda q: None).research(["a"], None) == ()
    assert SearchResearcher(lambda q: "text").research(["a"], None) == ()
    assert SearchResearcher(lambda q: 3).research(["a"], None) == ()
    assert SearchResearcher(lambda q: iter([("T", "x", "s")])).research(["a"], None) == (
        Result("T", "x", "s"),
    )


def test_search_researcher_none_empty_and_errors():
    assert SearchResearcher(None).research(["plateau"], None) == ()
    called = []
    assert SearchResearcher(lambda q: called.append(q) or []).research([" ", ""], None) == ()
    assert called == []

    def broken(query):
        raise ConnectionError("offline")

    with pytest.raises(ConnectionError):
        SearchResearcher(broken).research(["plateau"], None)
    with pytest.raises(ValueError):
        SearchResearcher(k=-1)


def test_search_researcher_default_is_offline():
    out = SearchResearcher().research(["overfitting", "train validation gap"], None)
    assert 1 <= len(out) <= 3
    assert out[0].source == SOURCE_PREFIX + "overfitting"


# ------------------------------------------------------------------ Sanitizer
@pytest.mark.parametrize(
    "variant",
    ["cifar-10", "CIFAR10", "Cifar_10", "cifar 10", "CIFAR.10", "cifar - 10", "CiFaR__10"],
)
def test_sanitizer_replaces_case_and_separator_variants(variant):
    s = Sanitizer({"cifar-10": "DATASET"})
    assert s.clean(f"trained on {variant}, done") == "trained on DATASET, done"
    assert s.clean(variant) == "DATASET"


def test_sanitizer_digit_suffix_variants():
    s = Sanitizer({"resnet9": "MODEL"})
    for variant in ["resnet9", "ResNet-9", "RESNET_9", "resnet 9", "Resnet.9"]:
        assert s.clean(f"a {variant}.") == "a MODEL.", variant


def test_sanitizer_respects_word_boundaries():
    s = Sanitizer({"cnn": "MODEL"})
    assert s.clean("cnnx xcnn 2cnn cnn2") == "cnnx xcnn 2cnn cnn2"
    assert s.clean("my_cnn (CNN), cnn-based; cnn.") == "my_MODEL (MODEL), MODEL-based; MODEL."
    assert Sanitizer({"cifar-10": "D"}).clean("cifar-100 cifar-10") == "cifar-100 D"


def test_sanitizer_longer_names_first():
    s = Sanitizer({"resnet": "FAMILY", "resnet9": "MODEL"})
    assert s.clean("ResNet-9 is a small ResNet") == "MODEL is a small FAMILY"
    assert s.leaks("ResNet-9") == ["resnet9"]
    # tokens are not rewritten even if they spell a configured name
    t = Sanitizer({"model": "NET", "net": "MODEL"})
    assert t.clean("model net") == "NET MODEL"


def test_sanitizer_iterable_names_get_numbered_tokens():
    s = Sanitizer(["digits", "", "cnn", "Digits"])  # empty and repeated names skipped
    assert s.mapping == {"digits": "NAME_1", "cnn": "NAME_2"}
    assert s.clean("cnn on DIGITS") == "NAME_2 on NAME_1"
    assert Sanitizer("mnist").clean("MNIST") == "NAME_1"
    assert Sanitizer().clean("anything at all") == "anything at all"


def test_sanitizer_clean_obj_nested():
    Row = namedtuple("Row", "name value")
    s = Sanitizer({"digits": "DATASET", "cnn": "MODEL"})
    obj = {
        "digits": {"model": "CNN", "epochs": 3, "lr": 1e-3},
        "notes": ["cnn on digits", ("Digits", 2, None)],
        "row": Row("cnn", 0.5),
        7: True,
    }
    out = s.clean_obj(obj)
    assert out == {
        "DATASET": {"model": "MODEL", "epochs": 3, "lr": 1e-3},
        "notes": ["MODEL on DATASET", ("DATASET", 2, None)],
        "row": Row("MODEL", 0.5),
        7: True,
    }
    assert isinstance(out["notes"][1], tuple) and isinstance(out["row"], Row)
    assert obj["digits"]["model"] == "CNN"  # input untouched


def test_sanitizer_disabled_is_identity():
    s = Sanitizer({"digits": "DATASET"}, enabled=False)
    obj = {"digits": ["digits"]}
    assert s.clean("digits") == "digits"
    assert s.clean_obj(obj) is obj
    assert s.leaks("DIGITS") == ["digits"]


def test_sanitizer_leaks():
    s = Sanitizer({"cifar-10": "D", "resnet9": "M", "adamw": "O"})
    text = "ResNet-9 trained on CIFAR10 with ResNet9 again"
    assert s.leaks(text) == ["cifar-10", "resnet9"]
    assert s.leaks(s.clean(text)) == []


def test_sanitizer_rejects_bad_names():
    with pytest.raises(ValueError):
        Sanitizer(["--"])
    with pytest.raises(ValueError):
        Sanitizer({"...": "X"})
    with pytest.raises(TypeError):
        Sanitizer([3])
    with pytest.raises(TypeError):
        Sanitizer({"a": 3})
