"""Offline advisor roles: diagnosis flags mapped to bounded hyperparameter changes.

* :class:`HeuristicConsultant` turns the flags of the context into moves of the usual
  suspects (``learning_rate``, ``weight_decay``, ``dropout_rate``,
  ``label_smoothing``, ``batch_size``, ``optimizer``; any of them may be absent from
  the space), or explores around the current point when there is nothing to fix;
* :class:`HeuristicSupervisor` merges proposals name by name;
* :class:`HeuristicAnalyst` names search keywords for the flags;
* :class:`Heuristic` chains them into one offline advisor.

A proposal holds only the names whose value it changes (relative to
``context.hparams``), always inside the space (every proposal goes through
:func:`~hagfish_jax.shell.advisors.validate.validate`). Everything is deterministic
given the seed and the context's round.

See :mod:`.consultant` for an example.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...core.dimensions import Choice, IntUniform, LogUniform, Uniform
from .consultant import HeuristicConsultant, _fmt, _is_number
from .context import Advice, AdviceContext, Analysis
from .diagnosis import (
    DIVERGENCE,
    KEYWORDS,
    OSCILLATION,
    OVERFITTING,
    PLATEAU,
    SLOW_CONVERGENCE,
    UNDERFITTING,
    diagnose,
)
from .validate import validate

__all__ = ["Heuristic", "HeuristicAnalyst", "HeuristicConsultant", "HeuristicSupervisor"]


class HeuristicSupervisor:
    """Merges proposals name by name: the geometric mean on a
    :class:`~hagfish_jax.LogUniform`, the mean on a :class:`~hagfish_jax.Uniform` or
    :class:`~hagfish_jax.IntUniform`, the choice nearest the mean on a numeric
    :class:`~hagfish_jax.Choice` (ties: the first proposal's), the most common value on
    another choice (ties: the first proposal's). A name in one proposal only is taken as
    proposed. The result is validated; the flags are the union of the proposals'."""

    def decide(self, context: AdviceContext, proposals: Sequence[Advice]) -> Advice:
        """One configuration from ``proposals`` (see the class docstring)."""
        space = context.space
        checked = [
            validate(p.hparams, space).hparams
            for p in proposals
            if isinstance(p, Advice) and isinstance(p.hparams, Mapping)
        ]
        flags = sorted({str(f) for p in proposals if isinstance(p, Advice) for f in p.flags})
        names = list(dict.fromkeys(n for c in checked for n in c))
        merged: dict[str, Any] = {}
        notes = []
        for name in names:
            vals = [c[name] for c in checked if name in c]
            dim = space[name] if space is not None else None
            merged[name] = self._merge(dim, vals)
            old = context.hparams.get(name)
            how = "" if len(set(map(repr, vals))) == 1 else (
                " (from " + ", ".join(_fmt(v) for v in vals) + ")"
            )
            notes.append(f"{name} {_fmt(old)} -> {_fmt(merged[name])}{how}")
        result = validate(merged, space).hparams
        text = f"merged {len(checked)} proposal{'s' if len(checked) != 1 else ''}"
        return Advice(result, text + (": " + "; ".join(notes) if notes else ""), tuple(flags))

    @staticmethod
    def _merge(dim: Any, vals: list[Any]) -> Any:
        if len(vals) == 1:
            return vals[0]
        numeric = all(_is_number(v) for v in vals)
        if isinstance(dim, Choice) and dim.numeric and numeric:
            mean = float(np.mean([float(v) for v in vals]))
            dist = [abs(float(c) - mean) for c in dim.values]
            tied = [c for c, d in zip(dim.values, dist) if d == min(dist)]
            return vals[0] if vals[0] in tied else tied[0]
        if isinstance(dim, LogUniform) and numeric and all(float(v) > 0 for v in vals):
            return float(math.exp(np.mean([math.log(float(v)) for v in vals])))
        if (isinstance(dim, (Uniform, IntUniform)) or dim is None) and numeric:
            mean = float(np.mean([float(v) for v in vals]))
            return int(round(mean)) if isinstance(dim, IntUniform) else mean
        counts = Counter(map(repr, vals))
        top = max(counts.values())
        return next(v for v in vals if counts[repr(v)] == top)


_MEANING = {
    DIVERGENCE: "the loss became non-finite or exploded",
    OVERFITTING: "validation worsens while training keeps improving",
    UNDERFITTING: "the model fits neither split",
    PLATEAU: "the validation loss stopped improving",
    OSCILLATION: "the validation loss zig-zags from epoch to epoch",
    SLOW_CONVERGENCE: "the loss was still falling steadily at the end",
}


class HeuristicAnalyst:
    """Names search keywords for the flags (:data:`~.diagnosis.KEYWORDS`) and writes a
    short summary; diagnoses ``context.history`` itself when the context has no flags."""

    def analyse(self, context: AdviceContext) -> Analysis:
        """Keywords (unique, in flag order) and a summary of the flags and features."""
        flags = tuple(context.flags)
        features: Mapping[str, Any] = context.features
        if (not flags or not features) and context.history:
            d = diagnose(context.history)
            flags = flags or d.flags
            features = features or d.features
        keywords = tuple(dict.fromkeys(k for f in flags for k in KEYWORDS.get(f, ())))
        if flags:
            text = "Diagnosis: " + "; ".join(
                f"{f} ({_MEANING[f]})" if f in _MEANING else f for f in flags
            ) + "."
        else:
            text = "Diagnosis: no problem found in the curves."
        return Analysis(keywords, " ".join([text, *_summary(features)]))


def _summary(features: Mapping[str, Any]) -> list[str]:
    """Sentences on the key features that are known."""
    def known(key: str) -> Any:
        v = features.get(key)
        return v if _is_number(v) and math.isfinite(float(v)) else None

    out = []
    epochs, best = known("epochs"), known("best_epoch")
    if known("best_val_loss") is not None:
        where = f" at epoch {best}" if best is not None else ""
        out.append(f"Best validation loss {_fmt(float(features['best_val_loss']))}{where}"
                   + (f" of {epochs} epochs." if epochs is not None else "."))
    if known("best_val_accuracy") is not None:
        out.append(f"Best validation accuracy {_fmt(float(features['best_val_accuracy']))}.")
    tl, vl = known("final_train_loss"), known("final_val_loss")
    if tl is not None and vl is not None:
        out.append(f"Final train/validation loss {_fmt(float(tl))}/{_fmt(float(vl))}.")
    slope = known("val_loss_slope")
    if slope is not None:
        out.append(f"Validation loss slope over the last epochs {_fmt(float(slope))} per epoch.")
    return out


class Heuristic:
    """A complete offline advisor: diagnose (when the context has no flags), a cautious
    proposal, a bold one that sees it, and the supervisor's merge. It also plays each
    role alone (:meth:`propose`, :meth:`decide`, :meth:`analyse`).

    Args:
      seed: seeds the cautious consultant (the bold one gets ``seed + 1``).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.cautious = HeuristicConsultant("cautious", seed=self.seed)
        self.bold = HeuristicConsultant("bold", seed=self.seed + 1)
        self.supervisor = HeuristicSupervisor()
        self.analyst = HeuristicAnalyst()

    @staticmethod
    def _diagnosed(context: AdviceContext) -> AdviceContext:
        if context.flags or not context.history:
            return context
        d = diagnose(context.history)
        return context._replace(flags=d.flags, features=context.features or d.features)

    def advise(self, context: AdviceContext) -> Advice:
        """One round of advice; the values are always inside the space."""
        context = self._diagnosed(context)
        a = self.cautious.propose(context, None)
        b = self.bold.propose(context, a)
        return self.supervisor.decide(context, [a, b])

    def propose(self, context: AdviceContext, other: Advice | None) -> Advice:
        """The cautious consultant's proposal (after diagnosing, if needed)."""
        return self.cautious.propose(self._diagnosed(context), other)

    def decide(self, context: AdviceContext, proposals: Sequence[Advice]) -> Advice:
        """The heuristic supervisor's merge."""
        return self.supervisor.decide(context, proposals)

    def analyse(self, context: AdviceContext) -> Analysis:
        """The heuristic analyst's keywords and summary."""
        return self.analyst.analyse(context)
