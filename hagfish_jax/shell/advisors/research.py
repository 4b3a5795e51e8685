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
from typing import Any, NamedTuple

import numpy as np

from .context import AdviceContext, Result

__all__ = [
    "BM25",
    "ENTRIES",
    "SOURCE_PREFIX",
    "Entry",
    "SearchResearcher",
    "offline_search",
    "tokenize",
]

#: What every knowledge-base hit's ``source`` starts with (the entry's slug follows).
SOURCE_PREFIX = "hagfish knowledge base: "

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


# ------------------------------------------------------------------ knowledge base
class Entry(NamedTuple):
    """One knowledge-base remedy: a slug (for the source), a title, advice and topics."""

    slug: str
    title: str
    text: str
    topics: tuple[str, ...]


#: The remedies shipped with the package, searched by :func:`offline_search`.
ENTRIES: tuple[Entry, ...] = (
    Entry(
        "exploding-loss",
        "Exploding or diverging loss: learning rate too high",
        "When the training loss climbs, jumps by orders of magnitude or turns NaN within the"
        " first epochs, the step size is almost always too high. Cut the learning rate by"
        " 3-10x and restart from the last good checkpoint rather than continuing from the"
        " blown-up weights. Add gradient clipping at global norm 1.0 and a short linear"
        " warmup (1-5% of the steps) so the first updates stay small.",
        ("divergence", "diverging", "exploding loss", "nan", "instability", "too high"),
    ),
    Entry(
        "nan-values",
        "NaN or infinite values during training",
        "Non-finite losses that appear suddenly after a stable start often come from a"
        " numerical edge rather than the learning rate: a log of zero, a division by a"
        " tiny variance or an overflow in half precision. Compute cross-entropy from logits"
        " instead of probabilities, raise the optimizer epsilon (for example Adam's from"
        " 1e-8 to 1e-6) and keep the loss and normalisation statistics in float32."
        " If that is not enough, also lower the learning rate by 2-3x.",
        ("nan", "inf", "non-finite", "numerical stability", "mixed precision", "overflow"),
    ),
    Entry(
        "gradient-clipping",
        "Gradient clipping against loss spikes",
        "Occasional spikes in the loss curve, with the loss recovering afterwards, point to"
        " rare very large gradients. Clip the global gradient norm at 1.0 (0.5-5 is the"
        " usual range; log the norms first and clip a little above their median). Clipping"
        " keeps the learning rate usable, but if it triggers on most steps the learning"
        " rate itself is too high.",
        ("spikes", "gradient norm", "clipping", "exploding gradients", "stability"),
    ),
    Entry(
        "plateau",
        "Validation loss plateau",
        "When the validation loss stops improving for several epochs while training"
        " continues, the learning rate is usually too large to settle into a minimum."
        " Lower it by 3-10x on the plateau (reduce-on-plateau with a patience of 3-5"
        " epochs), or switch to a cosine decay to a small final value. If the plateau"
        " comes early with a high loss, the model may instead be too small or the"
        " learning rate too low.",
        ("plateau", "stagnation", "stalled", "no improvement", "validation loss flat"),
    ),
    Entry(
        "reduce-on-plateau",
        "Reduce the learning rate when progress stalls",
        "A reduce-on-plateau rule watches a validation metric and multiplies the learning"
        " rate by a factor (0.1-0.5) after a number of epochs without improvement"
        " (patience 2-10). Use a small minimum improvement threshold so noise does not"
        " reset the patience counter, and a floor on the rate (for example 1e-6)."
        " Two or three reductions are usually all that help.",
        ("plateau", "patience", "learning rate decay", "stalled", "adaptive schedule"),
    ),
    Entry(
        "overfitting",
        "Overfitting: growing gap between train and validation",
        "If the training loss keeps falling while the validation loss rises, or the train"
        " accuracy is far above the validation accuracy, the model memorises the training"
        " set. Increase regularisation: weight decay up by 3-10x, dropout 0.1-0.5, label"
        " smoothing 0.1, and stronger data augmentation. Stop early at the best validation"
        " epoch, and consider a smaller model or more data if the gap remains.",
        ("overfitting", "overfit", "generalization gap", "train validation gap", "memorize"),
    ),
    Entry(
        "underfitting",
        "Underfitting: training loss stays high",
        "A model whose training loss stays high, with the validation loss close to it,"
        " lacks capacity or is held back. Reduce regularisation first (halve weight decay,"
        " lower dropout), then increase capacity (wider or deeper layers) and train for"
        " more epochs. Check that the learning rate is not far too low: a learning rate"
        " range test often shows it can be raised 3-10x.",
        ("underfitting", "underfit", "high bias", "capacity", "high training loss"),
    ),
    Entry(
        "oscillation",
        "Oscillating or noisy validation loss",
        "A validation curve that zigzags from epoch to epoch usually means updates that"
        " are too large or too noisy. Lower the learning rate by 2-3x, increase the batch"
        " size, or raise momentum smoothing (Adam beta1 0.9, SGD momentum 0.9). Averaging"
        " the weights (an exponential moving average with decay 0.999) also steadies the"
        " evaluated model; and check that the validation set is big enough, as a few"
        " hundred examples are noisy by themselves.",
        ("oscillation", "oscillating", "noisy", "unstable validation", "zigzag", "variance"),
    ),
    Entry(
        "slow-convergence",
        "Slow convergence: loss still decreasing at the end",
        "If the loss is still decreasing steadily when the budget runs out, training"
        " converges too slowly. Raise the learning rate by 2-3x (as long as it stays"
        " stable), add a warmup so the higher rate is safe, or switch from plain SGD to"
        " Adam, which usually converges faster. Otherwise give the run more epochs: the"
        " curve says the model has not finished learning.",
        ("slow convergence", "still decreasing", "more epochs", "learning rate too low"),
    ),
    Entry(
        "large-batch",
        "Large batches: scaling the learning rate and generalization",
        "Larger batches give less noisy gradients but fewer updates per epoch and often a"
        " worse generalization gap. Follow the linear scaling rule (multiply the learning"
        " rate by the batch size factor, for example 8x batch -> 8x rate), with a warmup of"
        " about 5 epochs, and use LARS or LAMB beyond a few thousand examples per batch."
        " If generalization still suffers, go back to a smaller batch size.",
        ("large batch", "batch size", "linear scaling", "generalization", "sharp minima"),
    ),
    Entry(
        "small-batch-noise",
        "Small batches: noisy gradients",
        "Very small batches (under about 16) make gradient estimates noisy and the loss"
        " curve ragged, and batch normalisation statistics unreliable. Lower the learning"
        " rate roughly in proportion to the batch size, accumulate gradients over several"
        " steps to emulate a larger batch, or replace batch normalisation with group or"
        " layer normalisation. Some noise is useful: it acts as a regulariser.",
        ("small batch", "noisy gradients", "gradient accumulation", "batch size", "noise"),
    ),
    Entry(
        "adam-vs-sgd",
        "Choosing between Adam and SGD with momentum",
        "Adam (learning rate around 1e-3, or 3e-4 for transformers) converges quickly with"
        " little tuning, which makes it the safe default and the first thing to try when"
        " SGD is slow. SGD with momentum 0.9 (learning rate 0.01-0.1 with a decay schedule)"
        " often generalises slightly better on image classification once tuned. Use AdamW"
        " rather than Adam with L2 when weight decay matters.",
        ("optimizer", "adam", "sgd", "momentum", "adamw", "optimizer choice"),
    ),
    Entry(
        "adam-hyperparameters",
        "Tuning Adam's betas and epsilon",
        "Adam's defaults (beta1 0.9, beta2 0.999, epsilon 1e-8) suit most problems. For"
        " unstable training, lowering beta2 to 0.98 or 0.95 makes the second-moment"
        " estimate react faster to sudden large gradients. A larger epsilon (1e-6 to 1e-4)"
        " damps updates for parameters with tiny gradient variance and helps in low"
        " precision.",
        ("adam", "beta1", "beta2", "epsilon", "optimizer", "instability"),
    ),
    Entry(
        "momentum",
        "Momentum settings",
        "Momentum 0.9 is a good default for SGD; 0.95-0.99 smooths noisy gradients further"
        " but needs a smaller learning rate, since the effective step grows like"
        " 1 / (1 - momentum). If the loss oscillates with high momentum, reduce momentum"
        " or the learning rate. Nesterov momentum is a cheap, usually harmless improvement.",
        ("momentum", "nesterov", "sgd", "oscillation", "effective step size"),
    ),
    Entry(
        "weight-decay",
        "Weight decay strength",
        "Weight decay pulls weights toward zero and is the main regulariser for most"
        " networks. Typical values are 1e-4 to 5e-4 for SGD and 0.01-0.1 for AdamW (which"
        " decouples decay from the gradient). Increase it by 3-10x when the model overfits,"
        " decrease it when the model underfits, and usually exclude biases and"
        " normalisation parameters.",
        ("weight decay", "l2", "regularization", "regularisation", "adamw", "overfitting"),
    ),
    Entry(
        "label-smoothing",
        "Label smoothing against overconfidence",
        "Label smoothing replaces the one-hot targets with a mix of the label and the"
        " uniform distribution, which discourages overconfident logits. A value of"
        " 0.05-0.1 usually improves validation accuracy and calibration for classification"
        " with many classes. Avoid it when calibrated probabilities matter downstream or"
        " for knowledge distillation teachers.",
        ("label smoothing", "overconfidence", "calibration", "classification", "regularization"),
    ),
    Entry(
        "dropout",
        "Dropout rates",
        "Dropout randomly zeroes activations during training and helps mostly in large"
        " fully connected layers. Use 0.1-0.3 in convolutional or transformer blocks and up"
        " to 0.5 before dense classifier heads. Raise it when the model overfits, lower or"
        " remove it when the model underfits; training with heavy dropout needs more"
        " epochs.",
        ("dropout", "regularization", "overfitting", "underfitting"),
    ),
    Entry(
        "lr-warmup",
        "Learning-rate warmup",
        "Starting at the full learning rate can blow up training while the weights and the"
        " optimizer statistics are still poorly scaled. Increase the rate linearly from"
        " near zero over the first 1-5% of the steps (or 1-5 epochs). Warmup is"
        " essential with Adam on transformers, with large batches and with high learning"
        " rates, and costs almost nothing otherwise.",
        ("warmup", "warm up", "learning rate schedule", "early instability", "large batch"),
    ),
    Entry(
        "lr-schedules",
        "Learning-rate schedules: cosine, step, one-cycle",
        "A decaying learning rate lets training explore early and settle late. Cosine"
        " decay to about 1% of the peak is a robust default; step decay (divide by 10 at"
        " 50% and 75% of training) works well for SGD; one-cycle (ramp up, then down) often"
        " trains faster. Set the schedule's length to the real number of steps, otherwise"
        " the rate never gets small.",
        ("schedule", "cosine decay", "step decay", "one cycle", "annealing", "learning rate"),
    ),
    Entry(
        "lr-range-test",
        "Finding a learning rate with a range test",
        "Train for a few hundred steps while raising the learning rate exponentially from"
        " about 1e-7 to 1, and record the loss. Pick a rate roughly 10x below the point"
        " where the loss is lowest, or where it falls fastest. This takes minutes and"
        " usually lands within a factor of 3 of the best fixed rate.",
        ("learning rate finder", "range test", "learning rate too low", "learning rate too high"),
    ),
    Entry(
        "early-stopping",
        "Early stopping",
        "Evaluate on the validation set every epoch, keep the weights of the best epoch,"
        " and stop after 5-10 epochs (or 10-20% of the budget) without improvement. Early"
        " stopping bounds overfitting at no cost, but restore the best checkpoint rather"
        " than keeping the last one, and monitor a metric that is not too noisy.",
        ("early stopping", "patience", "overfitting", "best checkpoint", "budget"),
    ),
    Entry(
        "batch-normalisation",
        "Batch normalisation",
        "Normalising activations per batch lets deeper networks train with higher learning"
        " rates and less sensitivity to initialisation. Place it after convolutions or"
        " dense layers, before the nonlinearity. With batches under about 16 its statistics"
        " get noisy; use group or layer normalisation instead, and evaluate with the"
        " running averages, not the batch statistics.",
        ("batch normalization", "batch norm", "normalisation", "layer norm", "deep network"),
    ),
    Entry(
        "data-augmentation",
        "Data augmentation",
        "Augmentation multiplies the effective size of the training set and is one of the"
        " strongest remedies for overfitting. For images, random crops with 4 pixels of"
        " padding and horizontal flips are a cheap baseline; mixup (alpha 0.2) or cutout"
        " add more. Strong augmentation slows training, so pair it with more epochs, and"
        " reduce it if the model underfits.",
        ("augmentation", "mixup", "cutout", "random crop", "flip", "overfitting", "more data"),
    ),
    Entry(
        "initialisation",
        "Weight initialisation",
        "Badly scaled initial weights make activations vanish or explode through depth,"
        " which shows as a loss stuck at chance level or diverging right away. Use He"
        " (Kaiming) initialisation for ReLU networks and Glorot (Xavier) for tanh or"
        " linear layers; initialise the last layer of each residual branch to zero or a"
        " small scale in deep networks.",
        ("initialization", "initialisation", "vanishing gradients", "chance level", "he"),
    ),
    Entry(
        "model-capacity",
        "Model width and depth",
        "Capacity decides whether the model can fit the data at all. If the training loss"
        " stalls high, double the width or add layers (with residual connections and"
        " normalisation beyond about 10 layers). If the model overfits a small data set,"
        " shrink it by 2-4x before piling on regularisation.",
        ("capacity", "width", "depth", "model size", "underfitting", "overfitting"),
    ),
    Entry(
        "class-imbalance",
        "Class imbalance",
        "With a few dominant classes, accuracy looks good while the minority classes are"
        " ignored; track macro F1 or balanced accuracy instead. Weight the loss by inverse"
        " class frequency (or its square root), oversample the rare classes, or use a focal"
        " loss with gamma around 2.",
        ("imbalance", "f1", "minority class", "class weights", "oversampling"),
    ),
    Entry(
        "validation-noise",
        "Judging small differences between runs",
        "Differences in validation accuracy smaller than the noise between seeds are not"
        " evidence. Estimate that noise by repeating the best configuration with 2-3 seeds,"
        " smooth the curves over a few epochs before comparing, and prefer a larger"
        " validation set (thousands of examples) when decisions hinge on tenths of a"
        " percent.",
        ("noise", "seeds", "variance", "evaluation", "validation set size"),
    ),
)


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
