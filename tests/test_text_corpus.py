"""The standard-library docstring corpus: shapes, determinism, leak-free splits, a
vocabulary built on train only, a bag-of-words baseline above chance, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from hagfish_jax.tasks import text

NUM_CLASSES = len(text.CLASS_NAMES)


@pytest.fixture(scope="module")
def data():
    return text.load_docstrings_split(seed=0)


def _splits(split):
    return [
        (split.x_train, split.y_train),
        (split.x_val, split.y_val),
        (split.x_test, split.y_test),
    ]


def test_shapes_dtypes_and_classes(data):
    assert text.CLASS_NAMES == ("files", "numbers", "network", "concurrency", "text")
    for x, y in _splits(data):
        assert x.dtype == np.int32 and y.dtype == np.int32
        assert x.ndim == 2 and x.shape[1] == 32 and len(x) == len(y) > 0
        assert set(y.tolist()) == set(range(NUM_CLASSES))
        assert 0 <= x.min() and x.max() < 2000
    assert len(data.y_train) > len(data.y_val) > 0
    assert sum(len(y) for _, y in _splits(data)) == len(text.corpus())
    short = text.load_docstrings_split(max_len=4, vocab_size=10)
    assert short.x_train.shape[1] == 4 and short.x_test.max() <= 9


def test_corpus_is_deterministic_deduplicated_and_sorted():
    items = text.corpus()
    assert items == text.corpus() and items is not text.corpus()
    assert items == sorted(items, key=lambda p: (p[1], p[0]))
    texts = [t for t, _ in items]
    assert len(set(texts)) == len(texts)
    # nor two texts of the same words (they would encode alike, in two splits)
    assert len({" ".join(text.tokenize(t)) for t in texts}) == len(texts)
    assert all(len(text.tokenize(t)) >= 4 and "\n" not in t for t in texts)
    counts = np.bincount([label for _, label in items], minlength=NUM_CLASSES)
    assert counts.min() >= 50, counts  # about 150-360 a class on Python 3.11


def test_determinism_and_seed(data):
    again = text.load_docstrings_split(seed=0)
    for a, b in zip(data, again):
        np.testing.assert_array_equal(a, b)
    other = text.load_docstrings_split(seed=1)
    assert not np.array_equal(data.y_train, other.y_train)
    assert not np.array_equal(data.x_test, other.x_test)


def test_splits_are_disjoint_stratified_and_cover_the_corpus():
    items = text.corpus()
    train, val, test = text.split_corpus(items, seed=0)
    sets = [{t for t, _ in part} for part in (train, val, test)]
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    assert sorted(train + val + test) == sorted(items)
    total = np.bincount([y for _, y in items])
    for part, share in ((val, 0.2), (test, 0.2)):
        counts = np.bincount([y for _, y in part], minlength=NUM_CLASSES)
        np.testing.assert_allclose(counts, total * share, atol=1)
    # on a toy corpus: every class in every split, whatever the seed
    toy = [(f"text {i}", i % 3) for i in range(30)]
    for seed in range(5):
        parts = text.split_corpus(toy, seed=seed, val_fraction=0.3, test_fraction=0.3)
        assert all({y for _, y in part} == {0, 1, 2} for part in parts)
        assert sorted(sum(parts, [])) == sorted(toy)
    assert text.split_corpus(toy, seed=0) == text.split_corpus(toy, seed=0)
    assert text.split_corpus(toy, seed=0) != text.split_corpus(toy, seed=1)


def test_vocabulary_is_built_on_train_only(data):
    train, _, test = text.split_corpus(text.corpus(), seed=0)
    train_words = {w for t, _ in train for w in text.tokenize(t)}
    vocab = text.vocabulary([t for t, _ in train], 2000)
    assert set(vocab) <= train_words  # all of them: about 1600 words on Python 3.11
    assert sorted(vocab.values()) == list(range(2, 2 + min(len(train_words), 1998)))
    checked = 0
    for row, (doc, _) in enumerate(test):
        for pos, word in enumerate(text.tokenize(doc)[:32]):
            if word not in train_words:
                assert data.x_test[row, pos] == 1, (doc, word)
                checked += 1
            else:
                assert data.x_test[row, pos] == vocab.get(word, 1)
    assert checked > 0  # some test words never occur in train


def test_vocabulary_and_encode_helpers():
    vocab = text.vocabulary(["b a c", "a b", "a d"], vocab_size=4)
    assert vocab == {"a": 2, "b": 3}  # a: 3, b: 2, c and d tie at 1 but do not fit
    assert text.vocabulary(["b a", "a b"], vocab_size=10) == {"a": 2, "b": 3}
    ids = text.encode(["A b, zzz B!", "", "a a a a a a"], vocab, max_len=4)
    assert ids.dtype == np.int32 and ids.shape == (3, 4)
    np.testing.assert_array_equal(ids, [[2, 3, 1, 3], [0, 0, 0, 0], [2, 2, 2, 2]])


def test_bag_of_words_nearest_centroid_beats_chance(data):
    vocab_size = int(max(x.max() for x, _ in _splits(data))) + 1

    def bags(x):
        counts = np.zeros((len(x), vocab_size))
        np.add.at(counts, (np.repeat(np.arange(len(x)), x.shape[1]), x.ravel()), 1.0)
        counts[:, :2] = 0.0  # padding and unknown words
        return counts / np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-9)

    train = bags(data.x_train)
    centroids = np.stack([train[data.y_train == c].mean(0) for c in range(NUM_CLASSES)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    accuracy = np.mean(np.argmax(bags(data.x_test) @ centroids.T, axis=1) == data.y_test)
    assert accuracy > 0.4, accuracy  # chance is about 0.25 (the largest class)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_len": 0}, "max_len"),
        ({"max_len": 2.5}, "max_len"),
        ({"vocab_size": 2}, "vocab_size"),
        ({"vocab_size": True}, "vocab_size"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("+", r"\+")):
        text.load_docstrings_split(**kwargs)


def test_split_corpus_refuses_tiny_classes():
    with pytest.raises(ValueError, match="items"):
        text.split_corpus([("a b c d", 0), ("e f g h", 0), ("i j k l", 1)], seed=0)
