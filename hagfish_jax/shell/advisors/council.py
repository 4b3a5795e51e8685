"""The council: two consultants, a supervisor, an analyst and a researcher.

One :meth:`Council.advise` call is one round of advice:

1. **review** (skipped when the context was reviewed already): the curves are
   diagnosed (:func:`~hagfish_jax.shell.advisors.diagnosis.diagnose`), the analyst
   names keywords, the researcher looks remedies up with them;
2. **consult**: consultant A proposes, consultant B answers seeing A's proposal, and so
   on for ``turns`` turns, each seeing the other's last proposal;
3. **supervise**: the supervisor merges the last proposals into one configuration;
4. **check**: the configuration is validated against the space
   (:func:`~hagfish_jax.shell.advisors.validate.validate`): out-of-range values
   clamped, unknown names dropped, wrong types refused, each change recorded.

Each role is pluggable (a heuristic, an LLM, the user's object). A role that raises, or
returns something unusable, is replaced for that call by its offline counterpart, and
the failure becomes an event (``on_event``); advice never stops a run. Events are plain
dicts: ``{"kind": "fallback", "role": ..., "error": ...}``, ``{"kind": "adjusted",
...}``, ``{"kind": "proposal", ...}``, ``{"kind": "research", ...}``.

>>> import hagfish_jax as hj
>>> from hagfish_jax.shell.advisors import Council, AdviceContext
>>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
>>> rows = [{"epoch": e, "train_loss": 2.0 * 1.6 ** e, "val_loss": 2.0 * 1.6 ** e}
...         for e in range(6)]
>>> advice = Council().advise(AdviceContext(space, {"learning_rate": 0.05}, rows))
>>> "divergence" in advice.flags and advice.hparams["learning_rate"] < 0.05
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .context import Advice, AdviceContext, Analysis, Result
from .diagnosis import diagnose
from .heuristic import HeuristicAnalyst, HeuristicConsultant, HeuristicSupervisor
from .research import SearchResearcher, _coerce, _iterate
from .sanitize import Sanitizer
from .validate import validate

__all__ = ["Council"]

Event = Callable[[dict[str, Any]], None]


def _text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:500]


class Council:
    """A multi-role advisor (see the module docstring); offline by default.

    Args:
      consultant_a, consultant_b: :class:`~hagfish_jax.shell.advisors.context.Consultant`
        roles; default a cautious and a bold heuristic consultant.
      supervisor: merges the proposals; default the heuristic merge.
      analyst: names keywords from the curves; default the heuristic analyst.
      researcher: looks remedies up; default BM25 over the shipped knowledge base
        (``None`` here means that default; pass ``SearchResearcher(None)`` for none).
      turns: consultant turns (each turn: A, then B), at least 1.
      sanitizer: cleans the research notes before any role sees them (LLM roles clean
        their own prompts as well); default none.
      seed: seeds the offline roles (and the fallbacks).
      allowed: names the advice may change (``None``: every name of the space).
      on_event: called with each event dict (fallbacks, adjustments, proposals).
    """

    def __init__(
        self,
        consultant_a: Any = None,
        consultant_b: Any = None,
        supervisor: Any = None,
        analyst: Any = None,
        researcher: Any = None,
        *,
        turns: int = 2,
        sanitizer: Sanitizer | None = None,
        seed: int = 0,
        allowed: Sequence[str] | None = None,
        on_event: Event | None = None,
    ) -> None:
        if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
            raise ValueError(f"Council: turns must be an integer >= 1, got {turns!r}")
        self._offline = {
            "consultant_a": HeuristicConsultant("cautious", seed=seed),
            "consultant_b": HeuristicConsultant("bold", seed=seed + 1),
            "supervisor": HeuristicSupervisor(),
            "analyst": HeuristicAnalyst(),
        }
        self.consultant_a = consultant_a or self._offline["consultant_a"]
        self.consultant_b = consultant_b or self._offline["consultant_b"]
        self.supervisor = supervisor or self._offline["supervisor"]
        self.analyst = analyst or self._offline["analyst"]
        self.researcher = researcher if researcher is not None else SearchResearcher()
        self.turns = turns
        self.sanitizer = sanitizer
        self.allowed = None if allowed is None else tuple(allowed)
        self.on_event = on_event
        #: the adjustments :func:`validate` made to the last advice
        self.adjustments: list[dict[str, Any]] = []
        #: the last analysis (keywords and text) and who made it
        self.analysis: Analysis | None = None
        #: which class answered each role's last call (the offline one after a fallback)
        self.answered_by: dict[str, str] = {}

    @property
    def analysed_by(self) -> str:
        """The class that made the last analysis (``""`` before any)."""
        return self.answered_by.get("analyst", "")

    # -- events -----------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event({"kind": kind, **fields})

    def _call(self, role: str, fn: Callable[[Any], Any], check: Callable[[Any], bool]) -> Any:
        """``fn(role object)``; on an exception or an unusable answer, the offline
        role's answer, and a ``fallback`` event."""
        obj = getattr(self, role)
        try:
            out = fn(obj)
            if not check(out):
                raise TypeError(f"unusable answer {type(out).__name__}")
            self.answered_by[role] = type(obj).__name__
            return out
        except Exception as err:  # noqa: BLE001 - any failure falls back, never stops
            offline = self._offline[role]
            if obj is offline:
                raise
            self._event("fallback", role=role, error=_text(err))
            self.answered_by[role] = type(offline).__name__
            return fn(offline)

    # -- review -----------------------------------------------------------------------
    def review(self, context: AdviceContext) -> AdviceContext:
        """The context with the diagnosis, the analyst's keywords and the research
        notes filled in (a context with ``keywords`` set is returned as it is)."""
        if context.keywords is not None:
            return context
        if not context.flags and context.history:
            d = diagnose(context.history)
            context = context._replace(flags=d.flags, features=d.features)
        analysis = self._call(
            "analyst",
            lambda a: a.analyse(context),
            lambda x: isinstance(x, Analysis) and isinstance(x.keywords, (tuple, list)),
        )
        self.analysis = analysis
        keywords = tuple(str(k) for k in analysis.keywords)
        notes: tuple[Result, ...] = ()
        if keywords:
            try:
                found = self.researcher.research(keywords, context)
            except Exception as err:  # noqa: BLE001 - research is optional
                # a researcher that found hits before failing (an LLM researcher whose
                # model call failed after its search) hands them over on the error
                found = getattr(err, "hits", ())
                self._event("fallback", role="researcher", error=_text(err))
            # hits of any shape a search hook may give; what is not understood is dropped
            notes = tuple(r for r in map(_coerce, _iterate(found)) if r is not None)
        if self.sanitizer is not None:
            notes = tuple(
                Result(*(self.sanitizer.clean(str(part)) for part in n)) for n in notes
            )
        self._event("research", keywords=list(keywords), results=[n.title for n in notes])
        return context._replace(keywords=keywords, notes=notes)

    # -- advise -----------------------------------------------------------------------
    def advise(self, context: AdviceContext) -> Advice:
        """One round of advice; the values are always inside the space."""
        context = self.review(context)
        is_advice = lambda x: isinstance(x, Advice) and isinstance(x.hparams, Mapping)  # noqa: E731
        a = b = None
        for turn in range(self.turns):
            a = self._call("consultant_a", lambda c, b=b: c.propose(context, b), is_advice)
            self._event("proposal", role="consultant_a", turn=turn, hparams=dict(a.hparams),
                        rationale=a.rationale)
            b = self._call("consultant_b", lambda c, a=a: c.propose(context, a), is_advice)
            self._event("proposal", role="consultant_b", turn=turn, hparams=dict(b.hparams),
                        rationale=b.rationale)
        final = self._call("supervisor", lambda s: s.decide(context, [a, b]), is_advice)
        checked = validate(final.hparams, context.space, self.allowed)
        self.adjustments = checked.adjustments
        for adj in checked.adjustments:
            self._event("adjusted", **adj)
        flags = tuple(dict.fromkeys((*context.flags, *final.flags)))
        return Advice(checked.hparams, final.rationale, flags)
