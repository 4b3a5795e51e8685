"""The researcher role: look remedies up for the analyst's keywords, offline by default.

A short knowledge base of training remedies ships with the package (:data:`ENTRIES`),
and :func:`offline_search` ranks it with Okapi BM25 (:class:`BM25`), so a council can
research without a network. :class:`SearchResearcher` wraps any search callable; pass
your own (a web search, an internal wiki) to go online.

>>> from hagfish_jax.shell.advisors.research import offline_search
>>> hit = offline_search("training loss exploding, learning rate too high", k=1)[0]
>>> hit.source
'hagfish knowledge base: exploding-loss'

>>> from hagfish_jax.shell.advisors.research import BM25
>>> index = BM25(["the cat sat", "a dog barked at the cat", "birds sing"])
>>> index.top("dog", k=3)
[1]
>>> index.top("cats", k=3)  # the plural is stripped, so "cats" finds "cat"
[0, 1]
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .context import AdviceContext, Result
from .knowledge import ENTRIES, SOURCE_PREFIX, Entry

__all__ = [
    "BM25",
    "ENTRIES",
    "SOURCE_PREFIX",
    "Entry",
    "SearchResearcher",
    "offline_search",
    "tokenize",
]

#: The longest snippet :func:`offline_search` returns, in characters.
SNIPPET_CHARS = 400


# ------------------------------------------------------------------ tokenizer
#: Words too common to tell documents apart; dropped before indexing and querying.
STOP_WORDS = frozenset(
    """
    a an and are as at be been but by can do does for from has have if in into is it
    its more most not of on or so such than that the their then there these this those
    to too use used very was were when which while will with you your
    """.split()
)

# Endings stripped once, the first that fits (longer endings are listed first).
_SUFFIXES = ("ation", "ating", "ated", "ate", "ence", "ance", "ing", "ion", "ed", "ly")
# After these endings a doubled final consonant is undoubled ("overfitt" -> "overfit").
_UNDOUBLE_AFTER = frozenset({"ing", "ed"})
_VOWELS = frozenset("aeiou")
_WORD = re.compile(r"[^\W_]+")


def _stem(word: str) -> str:
    """Strip a few English endings so that inflected forms share one stem.

    Deliberately light (no dictionary, one ending per word):

    1. a plural: ``-ies`` becomes ``-y``; a final ``-s`` goes unless the word ends in
       ``-ss`` ("loss" stays);
    2. the first ending of ``-ation -ating -ated -ate -ence -ance -ing -ion -ed -ly``
       that leaves at least three characters; after ``-ing``/``-ed`` a doubled final
       consonant other than l, s or z is undoubled ("overfitting" -> "overfit");
    3. a final ``-e`` or ``-y`` when more than three characters remain.

    So "overfit", "overfits", "overfitting" and "overfitted" all give "overfit", and
    "oscillation", "oscillations", "oscillating" and "oscillate" all give "oscill".
    Words of three characters or fewer and words with a digit are left as they are.

    >>> [_stem(w) for w in ["overfitting", "oscillations", "oscillating", "loss", "noisy"]]
    ['overfit', 'oscill', 'oscill', 'loss', 'nois']
    """
    if len(word) <= 3 or any(ch.isdigit() for ch in word):
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if (
                suffix in _UNDOUBLE_AFTER
                and word[-1] == word[-2]
                and word[-1].isalpha()
                and word[-1] not in _VOWELS
                and word[-1] not in "lsz"
            ):
                word = word[:-1]
            break
    if word.endswith(("e", "y")) and len(word) > 3:
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Split ``text`` into index terms: lowercase, alphanumeric runs, no stop words, stemmed.

    Args:
      text: any text.

    Returns:
      The terms in order (repeats kept).

    >>> tokenize("The model is OVERFITTING: train/val gap of 12%")
    ['model', 'overfit', 'train', 'val', 'gap', '12']
    """
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


# ------------------------------------------------------------------ BM25
class BM25:
    """Okapi BM25 ranking over a fixed list of documents.

    A document's score for a query sums, over the query's distinct terms ``t``,

    ``idf(t) * f * (k1 + 1) / (f + k1 * (1 - b + b * len / avglen))``

    with ``f`` the term's count in the document, ``len`` the document's length in terms,
    ``avglen`` the mean length over the corpus, and
    ``idf(t) = log(1 + (N - n + 0.5) / (n + 0.5))`` for ``n`` of the ``N`` documents
    holding ``t`` (always positive, so any shared term raises a score).

    Args:
      documents: the texts to rank, tokenized with ``tokenizer``.
      k1: how quickly repeats of a term stop adding (0: presence only).
      b: how much longer documents are penalised (0: not at all, 1: fully).
      tokenizer: text to terms; :func:`tokenize` by default.

    Raises:
      ValueError: ``k1`` or ``b`` out of range (``k1 < 0``, ``b`` outside [0, 1]).
    """

    def __init__(
        self,
        documents: Sequence[str],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        tokenizer: Callable[[str], list[str]] = tokenize,
    ) -> None:
        if not k1 >= 0.0:
            raise ValueError(f"k1 must be >= 0, got {k1!r}")
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be in [0, 1], got {b!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self.tokenizer = tokenizer
        self.counts: list[Counter[str]] = [Counter(tokenizer(doc)) for doc in documents]
        self.lengths = np.array([sum(c.values()) for c in self.counts], dtype=np.float64)
        self.avg_length = float(self.lengths.mean()) if len(self.counts) else 0.0
        frequency: Counter[str] = Counter()
        for counts in self.counts:
            frequency.update(counts.keys())
        n_docs = len(self.counts)
        self.idf = {
            term: math.log(1.0 + (n_docs - n + 0.5) / (n + 0.5)) for term, n in frequency.items()
        }

    def __len__(self) -> int:
        return len(self.counts)

    def scores(self, query: str) -> np.ndarray:
        """The score of every document for ``query`` (zeros where no term is shared).

        Args:
          query: free text, tokenized like the documents; a repeated term counts once.

        Returns:
          A float64 array, one score per document, in document order.
        """
        out = np.zeros(len(self.counts), dtype=np.float64)
        if not self.counts:
            return out
        if self.avg_length > 0.0:
            norm = self.k1 * (1.0 - self.b + self.b * self.lengths / self.avg_length)
        else:
            norm = np.full(len(self.counts), self.k1)
        for term in dict.fromkeys(self.tokenizer(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            f = np.array([c.get(term, 0) for c in self.counts], dtype=np.float64)
            held = f > 0
            out[held] += idf * f[held] * (self.k1 + 1.0) / (f[held] + norm[held])
        return out

    def top(self, query: str, k: int) -> list[int]:
        """The indices of the ``k`` best documents, best first.

        Ties keep document order; documents scoring zero (no shared term) are left out,
        so fewer than ``k`` indices may come back.

        Args:
          query: free text.
          k: the most indices to return (``<= 0``: none).
        """
        if k <= 0:
            return []
        scores = self.scores(query)
        order = np.argsort(-scores, kind="stable")
        return [int(i) for i in order[:k] if scores[i] > 0.0]


@functools.lru_cache(maxsize=1)
def _index() -> BM25:
    """The BM25 index over the knowledge base (title, text and topics), built once."""
    return BM25([f"{e.title}. {e.text} {' '.join(e.topics)}" for e in ENTRIES])


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, marked with "..."."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "..."


def offline_search(query: str, k: int = 3) -> list[Result]:
    """Rank the shipped knowledge base for ``query`` (no network).

    Args:
      query: free text, e.g. the analyst's keywords joined.
      k: the most results to return.

    Returns:
      Up to ``k`` results, best first; none when no term of the query is known. Each
      result's source is ``"hagfish knowledge base: <slug>"`` and its snippet the
      entry's advice (at most about 400 characters).
    """
    return [
        Result(ENTRIES[i].title, _snippet(ENTRIES[i].text), SOURCE_PREFIX + ENTRIES[i].slug)
        for i in _index().top(query, k)
    ]


# ------------------------------------------------------------------ researcher
def _coerce(item: Any) -> Result | None:
    """A search hit as a :class:`Result`, or ``None`` when its shape is not understood."""
    if isinstance(item, Result):
        return item if all(isinstance(x, str) for x in item) else None
    if isinstance(item, (tuple, list)):
        if len(item) == 3 and all(isinstance(x, str) for x in item):
            return Result(*item)
        return None
    if isinstance(item, Mapping):
        fields = [item.get(key) for key in Result._fields]
        if all(isinstance(x, str) for x in fields):
            return Result(*fields)
    return None


class SearchResearcher:
    """A :class:`~hagfish_jax.shell.advisors.context.Researcher` over a search callable.

    The keywords are joined into one query and passed to ``search``; what comes back is
    coerced into :class:`Result` (a ``Result``; a tuple or list of three strings
    ``(title, snippet, source)``; a mapping with string ``title``, ``snippet`` and
    ``source``), anything else is skipped, duplicates (same title and source) are
    dropped, and at most ``k`` are kept.

    The default searches the shipped knowledge base offline. To go online, pass a
    callable of your own (a web or intranet search); nothing here touches the network.

    Args:
      search: query text to hits; ``None`` disables research (always ``()``).
      k: the most results kept per call.

    Raises:
      ValueError: ``k`` is negative.

    Exceptions raised by ``search`` are not caught: they propagate out of
    :meth:`research`, so the caller can record the failure and fall back.

    >>> researcher = SearchResearcher(lambda q: [("A", "about " + q, "s"), "junk"])
    >>> researcher.research(["plateau", "lr"], context=None)
    (Result(title='A', snippet='about plateau lr', source='s'),)
    """

    def __init__(
        self,
        search: Callable[[str], Sequence[Any]] | None = offline_search,
        k: int = 3,
    ) -> None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k!r}")
        self.search = search
        self.k = int(k)

    def research(
        self, keywords: Sequence[str], context: AdviceContext | None = None
    ) -> tuple[Result, ...]:
        """Search once with the keywords joined by spaces.

        Args:
          keywords: the analyst's keywords; blank ones are ignored.
          context: the advice context (unused by this researcher; kept for the protocol).

        Returns:
          Up to ``k`` distinct results, in the order the search gave them; ``()`` when
          ``search`` is ``None``, ``k`` is 0 or no keyword is left.
        """
        if self.search is None or self.k == 0:
            return ()
        query = " ".join(w.strip() for w in keywords if isinstance(w, str) and w.strip())
        if not query:
            return ()
        hits = self.search(query)
        if hits is None:
            return ()
        if isinstance(hits, (Result, Mapping, str)):
            hits = [hits]
        out: list[Result] = []
        seen: set[tuple[str, str]] = set()
        for item in _iterate(hits):
            result = _coerce(item)
            if result is None or (result.title, result.source) in seen:
                continue
            seen.add((result.title, result.source))
            out.append(result)
            if len(out) == self.k:
                break
        return tuple(out)


def _iterate(hits: Any) -> Iterable[Any]:
    """``hits`` as an iterable, or nothing when it cannot be iterated."""
    try:
        return iter(hits)
    except TypeError:
        return iter(())
