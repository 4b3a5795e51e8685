"""Advisors: who to ask when training needs help, offline by default.

* :mod:`.context`: what an advisor sees (:class:`AdviceContext`) and returns
  (:class:`Advice`), and the protocols of the roles;
* :mod:`.diagnosis`: flags and trend features from learning curves;
* :mod:`.heuristic`: offline consultants, supervisor and analyst;
* :mod:`.research`: the researcher, BM25 over a shipped knowledge base of remedies,
  or any search callable;
* :mod:`.sanitize`: anonymisation of every agent-facing text;
* :mod:`.validate`: proposals checked against the space;
* :mod:`.llm`: LLM roles over any OpenAI-compatible endpoint (extra ``llm``);
* :mod:`.council`: :class:`Council`, the roles together: one advisor for
  ``hj.Loop(advisor=...)`` and for ``hagfish hpo``.

Names load on first use, so ``import hagfish_jax.shell.advisors`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Advice": "context",
    "AdviceContext": "context",
    "Advisor": "context",
    "Analysis": "context",
    "Analyst": "context",
    "Consultant": "context",
    "Researcher": "context",
    "Result": "context",
    "Supervisor": "context",
    "Council": "council",
    "Diagnosis": "diagnosis",
    "Thresholds": "diagnosis",
    "diagnose": "diagnosis",
    "Heuristic": "heuristic",
    "HeuristicAnalyst": "heuristic",
    "HeuristicConsultant": "heuristic",
    "HeuristicSupervisor": "heuristic",
    "BM25": "research",
    "SearchResearcher": "research",
    "offline_search": "research",
    "Sanitizer": "sanitize",
    "Checked": "validate",
    "validate": "validate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "context", "council", "diagnosis", "heuristic", "llm",
                   "research", "sanitize", "validate"])
