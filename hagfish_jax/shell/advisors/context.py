"""What an advisor sees and what it returns.

An advisor is anything with ``advise(context: AdviceContext) -> Advice``. The same
advisor serves the trial level (``hagfish hpo``: one call per round, the context holds
the last trial's per-epoch curves) and the in-training :class:`hagfish_jax.Loop` (one
call on a plateau, the context holds the run's recent windows).

The roles of a :class:`~hagfish_jax.shell.advisors.council.Council` have protocols of
their own, so each can be a heuristic, an LLM or the user's code:

* a :class:`Consultant` proposes, seeing the other consultant's last proposal;
* a :class:`Supervisor` merges the proposals into the final configuration;
* an :class:`Analyst` reads the curves and names keywords for the research;
* a :class:`Researcher` looks remedies up with those keywords.

History rows are plain mappings with these keys, when known (others are kept):
``epoch``, ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``,
``train_f1``, ``val_f1``, ``cost``, ``learning_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ...core.space import Space

__all__ = [
    "HISTORY_KEYS",
    "Advice",
    "AdviceContext",
    "Advisor",
    "Analysis",
    "Analyst",
    "Consultant",
    "Researcher",
    "Result",
    "Supervisor",
]

#: The history keys advisors understand (rows may carry others). ``val_score`` and
#: ``train_score`` are a task's own headline metric (higher is better, any scale; what
#: the Loop hands an advisor), read where no accuracy is recorded.
HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "train_f1",
    "val_f1",
    "train_score",
    "val_score",
    "cost",
    "learning_rate",
)


class Advice(NamedTuple):
    """What an advisor proposes: new values (names of the space), why, and flags."""

    hparams: dict[str, Any]
    rationale: str = ""
    flags: tuple[str, ...] = ()


class Result(NamedTuple):
    """One search hit: a title, a short text and where it came from."""

    title: str
    snippet: str
    source: str


class Analysis(NamedTuple):
    """An analyst's reading of the curves: keywords to search with and its text."""

    keywords: tuple[str, ...]
    text: str = ""


class AdviceContext(NamedTuple):
    """Everything an advisor may use. Built by ``hagfish hpo`` and by the Loop.

    Attributes:
      space: the search space (bounds every proposal), or ``None``.
      hparams: the values in force, as plain Python values (a non-numeric choice as its
        value, e.g. ``"adam"``).
      history: per-epoch (or per-window) rows, oldest first; see :data:`HISTORY_KEYS`.
      flags: diagnosis flags (:mod:`~hagfish_jax.shell.advisors.diagnosis`).
      features: trend features of the curves (slopes, best epoch, gap, ...).
      notes: research results from the last round.
      budget_left: rounds (trial level) or windows (Loop) left, if known.
      round: the round (trial level) or window (Loop) this advice is for.
      trials: earlier trials, oldest first: ``{"hparams": ..., "val_accuracy": ...}``.
      keywords: the analyst's keywords, once analysed (``None``: not yet).
    """

    space: Space | None
    hparams: Mapping[str, Any]
    history: Sequence[Mapping[str, Any]] = ()
    flags: tuple[str, ...] = ()
    features: Mapping[str, float] = {}
    notes: tuple[Result, ...] = ()
    budget_left: int | None = None
    round: int = 0
    trials: Sequence[Mapping[str, Any]] = ()
    keywords: tuple[str, ...] | None = None

    # Mapping-style reads (``context["hparams"]``, ``"history" in context``), as the
    # Loop's first advisors were written against a dict; ``"window"`` is ``round``.
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key == "window":
                return self.round
            if key not in self._fields:
                raise KeyError(key)
            return getattr(self, key)
        return tuple.__getitem__(self, key)

    def __contains__(self, key: Any) -> bool:
        if isinstance(key, str):
            return key in self._fields or key == "window"
        return tuple.__contains__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``context[key]``, or ``default`` for an unknown key."""
        try:
            return self[key]
        except KeyError:
            return default


@runtime_checkable
class Advisor(Protocol):
    """Anything that advises: ``advise(context) -> Advice``."""

    def advise(self, context: AdviceContext) -> Advice: ...


@runtime_checkable
class Consultant(Protocol):
    """Proposes a configuration; ``other`` is the other consultant's last proposal."""

    def propose(self, context: AdviceContext, other: Advice | None) -> Advice: ...


@runtime_checkable
class Supervisor(Protocol):
    """Merges the consultants' proposals into the final configuration."""

    def decide(self, context: AdviceContext, proposals: Sequence[Advice]) -> Advice: ...


@runtime_checkable
class Analyst(Protocol):
    """Reads the curves (and the diagnosis in the context) and names keywords."""

    def analyse(self, context: AdviceContext) -> Analysis: ...


@runtime_checkable
class Researcher(Protocol):
    """Looks remedies up for the analyst's keywords."""

    def research(self, keywords: Sequence[str], context: AdviceContext) -> tuple[Result, ...]: ...
