"""Council roles played by a language model behind an OpenAI-compatible endpoint.

Any server that speaks the chat-completions protocol works: OpenAI, Gemini's
OpenAI-compatible endpoint, vLLM, Ollama, a llama.cpp server. Each role has an
:class:`Endpoint` of its own (base URL, model, key), usually resolved by
:func:`endpoints` from arguments and ``HAGFISH_LLM_*`` environment variables; the key
is only ever read from the environment.

What is sent and what comes back:

* every prompt describes the role, the search space (names, types, bounds, choices),
  the values in force, recent curves, diagnosis, research notes and earlier trials, and
  asks for JSON only; the dataset and the model stay anonymous, and every text goes
  through the caller's sanitizer before it leaves;
* the researcher (:class:`LLMResearcher`, optional) runs a search hook first (the
  shipped knowledge base by default) and has the model condense the hits into a few
  concrete remedies, keeping the hits when the model offers none;
* the answer is parsed as JSON data and nothing else: it is never evaluated or run,
  and the values it proposes are checked against the space by the caller
  (:func:`~hagfish_jax.shell.advisors.validate.validate`), not here;
* failures (rate limits, server errors, timeouts, lost connections) are retried with
  a doubling backoff; an answer format the server refuses is downgraded
  (``json_schema`` -> ``json_object`` -> plain prompt). A call that fails for good
  raises :class:`LLMError`, whose message never shows the API key.

The ``openai`` client is an optional dependency: ``pip install 'hagfish-jax[llm]'``.

>>> eps = endpoints(base_url="http://127.0.0.1:8080/v1", model="local", env={})
>>> sorted(eps) == sorted(ROLES)
True
>>> eps["supervisor"]
Endpoint(base_url='http://127.0.0.1:8080/v1', model='local', timeout=60.0, retries=3, backoff=1.0)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .context import Advice, AdviceContext, Analysis, Result
from .llm_client import ROLES, Chat, Endpoint, LLMError, endpoints, parse_json
from .prompts import (
    _ADVICE_SCHEMA,
    _ADVICE_SHAPE,
    _ANALYSIS_SCHEMA,
    _ANALYSIS_SHAPE,
    _JSON_ONLY,
    _REMEDIES_SCHEMA,
    _REMEDIES_SHAPE,
    _Cleaner,
    _context_sections,
    _dumps,
    _fmt,
    _Identity,
    _proposal_text,
    _quoted,
    _system,
)
from .research import SearchResearcher, offline_search

__all__ = [
    "ROLES",
    "Chat",
    "Endpoint",
    "LLMAnalyst",
    "LLMConsultant",
    "LLMError",
    "LLMResearcher",
    "LLMSupervisor",
    "endpoints",
    "llm_roles",
    "parse_json",
]

_MAX_KEYWORDS = 8
_KEYWORD_CHARS = 60
_REMEDY_CHARS = 400
_RESEARCH_PREFIX = "llm researcher: "


class _Role:
    """What the LLM roles share: the chat, the sanitizer and one guarded round trip."""

    def __init__(self, chat: Chat, sanitizer: _Cleaner | None = None):
        self.chat = chat
        self.sanitizer = sanitizer if sanitizer is not None else _Identity()

    def _ask(self, role: str, system: str, user: str, schema: dict) -> dict:
        clean = self.sanitizer.clean
        return self.chat.ask(role, clean(system), clean(user + "\n\n" + _JSON_ONLY), schema)


def _advice(role: str, answer: Mapping[str, Any]) -> Advice:
    """An :class:`Advice` from an answer; the values stay raw (the caller validates)."""
    hparams = answer.get("hparams")
    if not isinstance(hparams, Mapping):
        raise LLMError(f"{role}: the answer has no 'hparams' object")
    rationale = answer.get("rationale", "")
    if not isinstance(rationale, str):
        rationale = "" if rationale is None else json.dumps(rationale, default=str)
    return Advice(hparams=dict(hparams), rationale=rationale, flags=("llm", role))


class LLMConsultant(_Role):
    """A :class:`~hagfish_jax.shell.advisors.context.Consultant` played by a model.

    Args:
      chat: the role's client.
      name: the role name (``"consultant_a"`` or ``"consultant_b"``), sent as the
        ``ROLE:`` line and used in the advice's flags.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent.
    """

    def __init__(self, chat: Chat, name: str = "consultant_a", sanitizer: _Cleaner | None = None):
        super().__init__(chat, sanitizer)
        self.name = name

    def propose(self, context: AdviceContext, other: Advice | None) -> Advice:
        """Propose new values; ``other`` is the other consultant's last proposal."""
        system = _system(
            self.name,
            "You are one of two hyperparameter consultants for a neural-network training "
            "run. Read the curves and propose the values for the next step. A supervisor "
            "compares your proposal with the other consultant's.",
            context,
            _ADVICE_SHAPE,
        )
        theirs = "(none yet)" if other is None else _proposal_text(other)
        user = "\n".join(
            [*_context_sections(context), "", "OTHER CONSULTANT'S LAST PROPOSAL:", theirs]
        )
        return _advice(self.name, self._ask(self.name, system, user, _ADVICE_SCHEMA))


class LLMSupervisor(_Role):
    """A :class:`~hagfish_jax.shell.advisors.context.Supervisor` played by a model.

    Args:
      chat: the role's client.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent.
    """

    name = "supervisor"

    def decide(self, context: AdviceContext, proposals: Sequence[Advice]) -> Advice:
        """Merge the proposals into the final configuration."""
        system = _system(
            self.name,
            "You are the supervisor of two hyperparameter consultants for a neural-network "
            "training run. Weigh their proposals against the evidence and give the final "
            "values for the next step (take one, merge them, or keep the values in force).",
            context,
            _ADVICE_SHAPE,
        )
        listed = [f"{i + 1}. {_proposal_text(p)}" for i, p in enumerate(proposals)]
        user = "\n".join([*_context_sections(context), "", "PROPOSALS:", *(listed or ["(none)"])])
        return _advice(self.name, self._ask(self.name, system, user, _ADVICE_SCHEMA))


class LLMAnalyst(_Role):
    """An :class:`~hagfish_jax.shell.advisors.context.Analyst` played by a model.

    Args:
      chat: the role's client.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent.
    """

    name = "analyst"

    def analyse(self, context: AdviceContext) -> Analysis:
        """Read the curves; return up to 8 short search keywords and the reading."""
        system = _system(
            self.name,
            "You are the analyst of a neural-network training run. Read the curves and "
            "the diagnosis, say what is going on, and name up to "
            f"{_MAX_KEYWORDS} short, generic search phrases for finding remedies (about "
            "training behaviour, never about the data or the model's identity).",
            context,
            _ANALYSIS_SHAPE,
        )
        user = "\n".join(_context_sections(context))
        answer = self._ask(self.name, system, user, _ANALYSIS_SCHEMA)
        raw = answer.get("keywords")
        keywords: list[str] = []
        for word in raw if isinstance(raw, list) else []:
            if isinstance(word, str) and word.strip() and len(keywords) < _MAX_KEYWORDS:
                keywords.append(" ".join(word.split())[:_KEYWORD_CHARS])
        text = answer.get("analysis", "")
        if not isinstance(text, str):
            text = "" if text is None else json.dumps(text, default=str)
        return Analysis(keywords=tuple(keywords), text=text)


class LLMResearcher(_Role):
    """A :class:`~hagfish_jax.shell.advisors.context.Researcher` helped by a model.

    The search hook runs first, exactly as in
    :class:`~hagfish_jax.shell.advisors.research.SearchResearcher` (same coercion,
    deduplication and ``k``). The model then reads the keywords, the diagnosis (flags
    and curve features), the values in force and those hits, and condenses them into at
    most ``k`` short, concrete remedies for the next configuration. Each remedy becomes
    a :class:`~hagfish_jax.shell.advisors.context.Result` whose source names the model
    and the hits it drew on: ``"llm researcher: <model> from <source>; <source>"``
    (just ``"llm researcher: <model>"`` when the search found nothing).

    Args:
      chat: the role's client.
      search: query text to hits, as for ``SearchResearcher``; ``None`` searches
        nothing, and the model works from the diagnosis alone.
      k: the most search hits kept and the most remedies returned.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent
        (the search hits included).

    Raises:
      ValueError: ``k`` is negative.
    """

    name = "researcher"

    def __init__(
        self,
        chat: Chat,
        search: Callable[[str], Sequence[Any]] | None = offline_search,
        k: int = 3,
        sanitizer: _Cleaner | None = None,
    ) -> None:
        super().__init__(chat, sanitizer)
        self.searcher = SearchResearcher(search, k)
        self.k = self.searcher.k

    def research(
        self, keywords: Sequence[str], context: AdviceContext | None = None
    ) -> tuple[Result, ...]:
        """Search, then ask the model to turn the hits into remedies.

        Args:
          keywords: the analyst's keywords.
          context: the advice context (space, values in force, diagnosis); ``None``
            is read as an empty one.

        Returns:
          Up to ``k`` remedies as results (title, advice, source); the search hits
          unchanged when the model gives no usable remedy; ``()`` when ``k`` is 0.

        Raises:
          LLMError: the model call failed; the search's hits ride on it as ``hits``
            (the council records a fallback and keeps them as the notes).
          Exception: whatever the search hook raises, unchanged.
        """
        hits = self.searcher.research(keywords, context)
        if self.k == 0:
            return hits
        if context is None:
            context = AdviceContext(space=None, hparams={})
        system = _system(
            self.name,
            "You are the researcher for a neural-network training run. From the analyst's "
            "keywords, the diagnosis, the values in force and the search results below, "
            f"write at most {self.k} short, concrete remedies for the next configuration "
            "(which values to change, in which direction and roughly by how much). Rely "
            "on the search results where they apply; say nothing about the data or the "
            "model's identity.",
            context,
            _REMEDIES_SHAPE,
        )
        words = [" ".join(w.split())[:_KEYWORD_CHARS] for w in keywords if isinstance(w, str)]
        features = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(context.features.items()))
        found = [
            f"- {_quoted(h.title, 200)}: {_quoted(h.snippet, _REMEDY_CHARS)} "
            f"(source: {_quoted(h.source, 200)})"
            for h in hits
        ]
        user = "\n".join(
            [
                "KEYWORDS: " + (", ".join(w for w in words if w) or "(none)"),
                "DIAGNOSIS FLAGS: " + (", ".join(context.flags) if context.flags else "(none)"),
                "CURVE FEATURES: " + (features or "(none)"),
                "",
                "VALUES IN FORCE:",
                _dumps(context.hparams),
                "",
                "SEARCH RESULTS:",
                *(found or ["(none)"]),
                "",
                f"Give at most {self.k} remedies.",
            ]
        )
        try:
            answer = self._ask(self.name, system, user, _REMEDIES_SCHEMA)
        except LLMError as err:
            err.hits = hits  # the search's results are not lost with the model call
            raise
        source = _RESEARCH_PREFIX + self.chat.endpoint.model
        if hits:
            source += " from " + "; ".join(h.source for h in hits)
        remedies = _remedies(answer.get("remedies"), self.k)
        if not remedies:
            return hits
        return tuple(Result(title, advice, source) for title, advice in remedies)


def _remedies(raw: Any, k: int) -> list[tuple[str, str]]:
    """The well-formed ``(title, advice)`` pairs of an answer, at most ``k``, each cut.

    An item counts only as a mapping with a non-blank string ``title`` and ``advice``;
    anything else is skipped.

    >>> _remedies([{"title": "Lower lr", "advice": "halve it"}, {"title": 3}, "x"], 3)
    [('Lower lr', 'halve it')]
    """
    out: list[tuple[str, str]] = []
    for item in raw if isinstance(raw, list) else []:
        if len(out) == k:
            break
        if not isinstance(item, Mapping):
            continue
        title, advice = item.get("title"), item.get("advice")
        if not (isinstance(title, str) and isinstance(advice, str)):
            continue
        if title.strip() and advice.strip():
            out.append((title.strip()[:_REMEDY_CHARS], advice.strip()[:_REMEDY_CHARS]))
    return out


def llm_roles(
    endpoints: Mapping[str, Endpoint],
    transcript: Callable[[dict], None] | None = None,
    sanitizer: _Cleaner | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    search: Callable[[str], Sequence[Any]] | None = offline_search,
) -> dict[str, object]:
    """The council's model-played roles, one :class:`Chat` (endpoint, key) each.

    Args:
      endpoints: an :class:`Endpoint` per role (see :func:`endpoints`); the
        ``consultant_a``, ``consultant_b``, ``supervisor`` and ``analyst`` entries are
        required, ``researcher`` is optional.
      transcript: receives every attempt of every role.
      sanitizer: applied to every text sent.
      sleep: how the clients wait between retries.
      search: the researcher's search hook (see :class:`LLMResearcher`); used only
        when ``endpoints`` has a ``researcher``.

    Returns:
      ``{"consultant_a": ..., "consultant_b": ..., "supervisor": ..., "analyst": ...}``,
      plus ``"researcher"`` (an :class:`LLMResearcher`) when it has an endpoint.

    Raises:
      ValueError: a required role has no endpoint.
    """
    needed = ("consultant_a", "consultant_b", "supervisor", "analyst")
    missing = [r for r in needed if r not in endpoints]
    if missing:
        raise ValueError(f"no LLM endpoint for role(s) {missing}")

    def chat(role: str) -> Chat:
        return Chat(endpoints[role], transcript=transcript, sleep=sleep)

    roles: dict[str, object] = {
        "consultant_a": LLMConsultant(chat("consultant_a"), "consultant_a", sanitizer),
        "consultant_b": LLMConsultant(chat("consultant_b"), "consultant_b", sanitizer),
        "supervisor": LLMSupervisor(chat("supervisor"), sanitizer),
        "analyst": LLMAnalyst(chat("analyst"), sanitizer),
    }
    if "researcher" in endpoints:
        roles["researcher"] = LLMResearcher(chat("researcher"), search, sanitizer=sanitizer)
    return roles
