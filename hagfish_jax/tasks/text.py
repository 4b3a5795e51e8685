"""An offline text-classification data set: standard-library docstrings by module family.

Each example is the first paragraph of the docstring of a public function, class or
public method of a public class of a standard-library module, labelled by the family of
modules it comes from (:data:`FAMILIES`). The standard library ships with every Python:
a real text corpus with nothing to download, for tests and demos of sequence models.

An object counts for a module when its ``__module__`` is the module (or its real name,
``posixpath`` for ``os.path``), a submodule, its private twin (``_socket``, ``_pydecimal``)
or an :data:`IMPLEMENTATION` module (``posix`` for ``os``), not a re-export (``builtins``);
a method counts when its class does. Only own docstrings are read (never a base class's),
leading signature lines (``recv(buffersize[, flags]) -> data``) are skipped, a text needs
at least 4 words, and a text found under two labels is dropped.

Caveats: docstrings differ between Python versions and platforms (a module that does not
import is skipped), so counts vary a little (Python 3.11, Linux: 1415 texts, 146-361 a class).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .classification import Split

__all__ = [
    "CLASS_NAMES",
    "FAMILIES",
    "IMPLEMENTATION",
    "corpus",
    "encode",
    "load_docstrings_split",
    "split_corpus",
    "tokenize",
    "vocabulary",
]

#: The classes and the standard-library modules each is drawn from.
FAMILIES: dict[str, tuple[str, ...]] = {
    "files": ("os", "os.path", "shutil", "pathlib", "glob", "tempfile", "filecmp", "fnmatch")
    + ("stat",),
    "numbers": ("math", "cmath", "statistics", "decimal", "fractions", "random", "numbers"),
    "network": ("socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse")
    + ("smtplib", "ftplib", "email.message", "ipaddress"),
    "concurrency": ("threading", "multiprocessing", "asyncio", "concurrent.futures", "queue")
    + ("sched", "subprocess", "selectors"),
    "text": ("re", "string", "textwrap", "difflib", "unicodedata", "codecs", "html", "json")
    + ("csv",),
}

#: The class names in label order: label ``i`` is ``CLASS_NAMES[i]``.
CLASS_NAMES: tuple[str, ...] = tuple(FAMILIES)

#: Implementation modules whose objects count for a module, beyond its private twin.
IMPLEMENTATION = {"os": ("posix", "nt"), "os.path": ("genericpath",), "threading": ("_thread",)}

Items = list[tuple[str, int]]
_WORD = re.compile(r"[a-z]+")
_SIGNATURE = re.compile(r"[\w.]+\(.*\)(\s*->.*)?")


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and return its words (runs of ``[a-z]``)."""
    return _WORD.findall(text.lower())


def _paragraph(obj: Any) -> str | None:
    """The first paragraph of ``obj``'s own docstring on one line, or None if too short."""
    if not isinstance(getattr(obj, "__doc__", None), str):
        return None  # no docstring of its own: inspect.getdoc would inherit one
    lines = (inspect.getdoc(obj) or "").splitlines()
    while lines and (not lines[0].strip() or _SIGNATURE.fullmatch(lines[0].strip())):
        lines.pop(0)  # "name(args) -> result" lines of C functions
    text = " ".join(re.split(r"\n\s*\n", "\n".join(lines))[0].split())
    return text if len(tokenize(text)) >= 4 else None


def _module_texts(name: str) -> list[str]:
    """The docstring paragraphs of module ``name``; empty when it does not import."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return []
    last = name.rsplit(".", 1)[-1]
    owners = (name, module.__name__, f"_{last}", f"_py{last}", *IMPLEMENTATION.get(name, ()))

    def counts(obj: Any, default: bool = False) -> bool:  # __module__ in owners or below
        if not isinstance(m := getattr(obj, "__module__", None), str):
            return default  # C methods have no __module__: their class decides
        return any(m == o or m.startswith(o + ".") for o in owners)

    texts = []
    for attr in sorted(set(vars(module)) | set(getattr(module, "__all__", ()))):
        obj = getattr(module, attr, None)  # __all__ may name lazy attributes
        is_class = inspect.isclass(obj)
        if attr.startswith("_") or not (is_class or inspect.isroutine(obj)) or not counts(obj):
            continue
        texts.append(_paragraph(obj))
        for meth_name, meth in sorted(vars(obj).items()) if is_class else ():
            meth = getattr(meth, "__func__", meth)  # staticmethod, classmethod
            if not meth_name.startswith("_") and inspect.isroutine(meth) and counts(meth, True):
                texts.append(_paragraph(meth))
    return [t for t in texts if t is not None]


@functools.lru_cache(maxsize=1)
def _collect() -> tuple[tuple[str, int], ...]:
    # one text per sequence of words: texts that differ only in digits or punctuation
    # ("base 2 logarithm", "base 10 logarithm") encode alike, and would otherwise land
    # in two splits as the same example
    labels: dict[str, set[int]] = {}
    shown: dict[str, str] = {}
    for label, modules in enumerate(FAMILIES.values()):
        for text in {t for name in modules for t in _module_texts(name)}:
            words = " ".join(tokenize(text))
            labels.setdefault(words, set()).add(label)
            shown[words] = min(shown.get(words, text), text)
    items = sorted((min(ls), shown[w]) for w, ls in labels.items() if len(ls) == 1)
    if missing := sorted(set(CLASS_NAMES) - {CLASS_NAMES[label] for label, _ in items}):
        raise RuntimeError(f"text corpus: no docstrings for {missing}; modules missing?")
    return tuple((text, label) for label, text in items)


def corpus() -> Items:
    """All ``(text, label)`` pairs sorted by label then text; ``i`` is ``CLASS_NAMES[i]``.

    Raises:
      RuntimeError: a class has no texts (none of its modules imports).
    """
    return list(_collect())


def vocabulary(texts: Iterable[str], vocab_size: int = 2000) -> dict[str, int]:
    """Word ids for the ``vocab_size - 2`` most frequent words of ``texts``.

    Args:
      texts: the texts to count words in (the train split).
      vocab_size: ids available, padding (0) and unknown (1) included.

    Returns:
      ``word -> id`` with ids from 2 by falling frequency, ties broken alphabetically.
    """
    counts = Counter(w for text in texts for w in tokenize(text))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: max(vocab_size - 2, 0)]
    return {w: i + 2 for i, w in enumerate(ranked)}


def encode(texts: Sequence[str], vocab: dict[str, int], max_len: int) -> np.ndarray:
    """Token ids of the first ``max_len`` words of each text, right-padded with 0.

    Args:
      texts: the texts.
      vocab: ``word -> id`` from :func:`vocabulary`; other words become 1 (unknown).
      max_len: tokens kept per text.

    Returns:
      An int32 array of shape ``(len(texts), max_len)``.
    """
    out = np.zeros((len(texts), max_len), dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [vocab.get(w, 1) for w in tokenize(text)[:max_len]]
        out[row, : len(ids)] = ids
    return out


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for arg, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{arg} must be in (0, 1), got {value!r}")
    if (total := val_fraction + test_fraction) >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {total!r}")


def split_corpus(
    items: Sequence[tuple[str, int]],
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> tuple[Items, Items, Items]:
    """Split ``(text, label)`` pairs into stratified train, validation and test lists.

    Each class is permuted by ``numpy.random.default_rng(seed)``: its first
    ``round(n * test_fraction)`` items go to test, the next ``round(n * val_fraction)``
    to validation (at least one each), the rest to train; each list is then shuffled.

    Args:
      items: ``(text, label)`` pairs, e.g. :func:`corpus`.
      seed: seed of the permutations.
      val_fraction: share of each class used for validation.
      test_fraction: share of each class held out for the test.

    Raises:
      ValueError: a fraction out of range, or a class with fewer than 3 items.
    """
    _check_fractions(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    labels = np.array([label for _, label in items])
    parts: list[list[int]] = [[], [], []]
    for label in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == label))
        if len(idx) < 3:
            raise ValueError(f"items: class {label} has {len(idx)} items; it needs 3")
        n_test = max(1, min(round(len(idx) * test_fraction), len(idx) - 2))
        n_val = max(1, min(round(len(idx) * val_fraction), len(idx) - n_test - 1))
        parts[0] += idx[n_test + n_val :].tolist()
        parts[1] += idx[n_test : n_test + n_val].tolist()
        parts[2] += idx[:n_test].tolist()
    train, val, test = ([items[i] for i in rng.permutation(p)] for p in parts)
    return train, val, test


def load_docstrings_split(
    seed: int = 0,
    max_len: int = 32,
    vocab_size: int = 2000,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Split:
    """The docstring corpus (:func:`corpus`), split and encoded as token ids.

    Args:
      seed: seed of the stratified split (:func:`split_corpus`).
      max_len: tokens kept per text (longer texts are cut, shorter padded with 0).
      vocab_size: ids in the vocabulary (built on the train split only), padding (0) and
        unknown (1) included.
      val_fraction: share of each class used for validation.
      test_fraction: share of each class held out for the test.

    Returns:
      A :class:`~hagfish_jax.tasks.classification.Split`: ``x_*`` int32 token ids of shape
      ``(n, max_len)``, ``y_*`` int32 labels ``0 .. 4``; rows in :func:`split_corpus` order.

    Raises:
      ValueError: an argument out of range (the message names it).

    >>> data = load_docstrings_split(max_len=16)
    >>> data.x_train.shape[1], data.x_train.dtype, sorted(set(data.y_test.tolist()))
    (16, dtype('int32'), [0, 1, 2, 3, 4])
    """
    for arg, value, low in (("max_len", max_len, 1), ("vocab_size", vocab_size, 3)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
    _check_fractions(val_fraction, test_fraction)  # before the slow first corpus()
    train, val, test = split_corpus(corpus(), seed, val_fraction, test_fraction)
    vocab = vocabulary([text for text, _ in train], vocab_size)
    x = [encode([text for text, _ in p], vocab, int(max_len)) for p in (train, val, test)]
    y = [np.array([label for _, label in p], dtype=np.int32) for p in (train, val, test)]
    return Split(x[0], y[0], x[1], y[1], x[2], y[2])
