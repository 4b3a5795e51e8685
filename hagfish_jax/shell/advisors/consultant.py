"""The offline consultant (re-exported by :mod:`.heuristic`): flags to bounded moves.

>>> import hagfish_jax as hj
>>> from hagfish_jax.shell.advisors.context import AdviceContext
>>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1), batch_size=hj.Choice([32, 64, 128]))
>>> ctx = AdviceContext(space, {"learning_rate": 0.03, "batch_size": 64}, flags=("divergence",))
>>> advice = HeuristicConsultant("cautious").propose(ctx, None)
>>> advice.hparams
{'learning_rate': 0.01}
>>> advice.rationale
'divergence: learning_rate 0.03 -> 0.01'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...core.dimensions import Choice, IntUniform, LogUniform, Uniform
from ...core.space import Space
from .context import Advice, AdviceContext
from .diagnosis import (
    DIVERGENCE,
    FLAGS,
    OSCILLATION,
    OVERFITTING,
    PLATEAU,
    SLOW_CONVERGENCE,
    UNDERFITTING,
)
from .validate import validate

__all__ = ["HeuristicConsultant"]

#: The names each rule looks for, first match wins.
_NAMES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("learning_rate", "lr"),
    "weight_decay": ("weight_decay", "wd"),
    "dropout_rate": ("dropout_rate", "dropout"),
    "label_smoothing": ("label_smoothing",),
    "batch_size": ("batch_size",),
    "optimizer": ("optimizer",),
}

#: Step sizes per style. ``step``: the general factor on log-scale values; ``divergence``,
#: ``plateau``, ``slow``: the learning-rate factors of those rules; ``smoothing``, ``dropout``:
#: additive steps; ``explore``: the range of factors (log dimensions) and of fractions of
#: the width (linear ones) when exploring.
_STYLES: dict[str, dict[str, Any]] = {
    "cautious": {
        "step": 2.0,
        "divergence": 3.0,
        "plateau": 2.0,
        "slow": 2.0,
        "smoothing": 0.05,
        "dropout": 0.1,
        "explore": (1.5, 2.5),
        "explore_linear": (0.1, 0.2),
    },
    "bold": {
        "step": 4.0,
        "divergence": 10.0,
        "plateau": 3.0,
        "slow": 3.0,
        "smoothing": 0.1,
        "dropout": 0.2,
        "explore": (2.5, 4.0),
        "explore_linear": (0.2, 0.35),
    },
}

_INTERVALS = (Uniform, LogUniform, IntUniform)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _clamp(dim: Any, value: float) -> Any:
    """``value`` brought inside ``dim`` (nearest choice, bound, integer)."""
    if isinstance(dim, Choice):
        if not dim.numeric:
            return value
        return min(dim.values, key=lambda c: abs(float(c) - value))
    if isinstance(dim, _INTERVALS):
        value = min(max(value, float(dim.low)), float(dim.high))
        return int(round(value)) if isinstance(dim, IntUniform) else value
    return value


def _times(dim: Any, value: Any, factor: float) -> Any:
    """``value * factor``, inside ``dim``; a value at 0 moved up starts from a tenth of
    the width, so a multiplicative rule can still raise it."""
    v = float(value)
    if v <= 0 and factor > 1:
        lo, hi = (float(dim.low), float(dim.high)) if isinstance(dim, _INTERVALS) else (0, 0)
        v = max(v, lo) + 0.1 * (hi - lo) if hi > lo else v
        return _clamp(dim, v)
    return _clamp(dim, v * factor)


def _plus(dim: Any, value: Any, delta: float) -> Any:
    return _clamp(dim, float(value) + delta)


def _notch(dim: Any, value: Any, steps: int) -> Any:
    """``steps`` choices up or down on a numeric choice; doubling or halving per step on
    an interval (or without a space)."""
    if isinstance(dim, Choice) and dim.numeric:
        i = min(range(len(dim.values)), key=lambda j: abs(float(dim.values[j]) - float(value)))
        return dim.values[min(max(i + steps, 0), len(dim.values) - 1)]
    out = _clamp(dim, float(value) * 2.0**steps)
    return int(round(out)) if isinstance(value, (int, np.integer)) else out


def _key(hparams: Mapping[str, Any], names: Sequence[str]) -> tuple:
    return tuple((n, repr(hparams.get(n))) for n in names)


def _rank(trial: Mapping[str, Any]) -> tuple[int, float, float]:
    """A sort key of an earlier trial: a finite validation accuracy first (higher
    better), then a lower validation loss; unknown scores rank last."""

    def real(key: str) -> float | None:
        v = trial.get(key)
        return float(v) if _is_number(v) and math.isfinite(float(v)) else None

    acc, loss = real("val_accuracy"), real("val_loss")
    return (
        1 if acc is not None else 0,
        acc if acc is not None else -math.inf,
        -loss if loss is not None else -math.inf,
    )


def _starting_point(context: AdviceContext) -> tuple[dict[str, Any], str]:
    """``(values, note)``: the values in force, or the best earlier trial's values when
    the latest trial did worse than it."""
    base = dict(context.hparams)
    trials = [t for t in context.trials if isinstance(t, Mapping)]
    if len(trials) < 2:
        return base, ""
    ranks = [_rank(t) for t in trials]
    best = max(range(len(trials)), key=lambda i: ranks[i])
    if best == len(trials) - 1 or not ranks[-1] < ranks[best]:
        return base, ""
    earlier = trials[best].get("hparams")
    if not isinstance(earlier, Mapping):
        return base, ""
    return {**base, **earlier}, f"from trial {best} (the best so far)"


class HeuristicConsultant:
    """Proposes bounded changes for the context's flags; explores when there are none.

    The rules, for the names the space has (skipped otherwise):

    * divergence: learning rate / 3 (bold / 10); ``sgd`` -> ``adam``; no other rule;
    * overfitting: weight decay x step, label smoothing + 0.05 (bold 0.1), dropout
      + 0.1 (bold 0.2);
    * underfitting: learning rate x step, weight decay / step, dropout - 0.1 (0.2);
    * plateau: learning rate / 2 (bold / 3);
    * oscillation: learning rate / step, batch size one choice up;
    * slow_convergence: learning rate x 2 (bold x 3), batch size one choice down,
      ``sgd`` -> ``adam``.

    ``step`` is 2 (cautious) or 4 (bold). Flags it does not know are ignored; when
    the rules change nothing (no flags, or all at a bound) it perturbs one or two
    dimensions at random, avoiding the configurations tried already. It starts from the
    best earlier trial when the latest one did worse (``context.trials``). A cautious
    consultant meets ``other`` halfway on the names both changed.

    Args:
      style: ``"cautious"`` or ``"bold"``.
      seed: with the context's round, seeds the exploration
        (``numpy.random.default_rng(seed + round)``).
    """

    def __init__(self, style: str = "cautious", seed: int = 0) -> None:
        if style not in _STYLES:
            raise ValueError(f"HeuristicConsultant: style must be one of {list(_STYLES)}, "
                             f"got {style!r}")
        self.style = style
        self.seed = int(seed)
        self._steps = _STYLES[style]

    def __repr__(self) -> str:
        return f"HeuristicConsultant({self.style!r}, seed={self.seed})"

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _names(context: AdviceContext, values: Mapping[str, Any]) -> list[str]:
        if context.space is not None:
            return [n for n in context.space.names if n in values]
        return [n for n in values if _is_number(values[n])]

    @staticmethod
    def _dim(space: Space | None, name: str) -> Any:
        return space[name] if space is not None else None

    @staticmethod
    def _find(role: str, names: Sequence[str]) -> str | None:
        for alias in _NAMES[role]:
            if alias in names:
                return alias
        return None

    # -- the rules --------------------------------------------------------------------
    def _apply(
        self, flags: Sequence[str], values: dict[str, Any], names: list[str], space: Space | None
    ) -> list[str]:
        """Apply each flag's rules to ``values`` in place; one rationale part a flag."""
        s = self._steps
        known = [f for f in FLAGS if f in flags]
        if DIVERGENCE in known:
            known = [DIVERGENCE]  # the other readings mean nothing on a diverged run
        parts = []
        for flag in known:
            moves: list[tuple[str, str, Any]] = []  # (role, how, amount)
            if flag == DIVERGENCE:
                moves = [("learning_rate", "divide", s["divergence"]), ("optimizer", "adam", 0)]
            elif flag == OVERFITTING:
                moves = [
                    ("weight_decay", "times", s["step"]),
                    ("label_smoothing", "plus", s["smoothing"]),
                    ("dropout_rate", "plus", s["dropout"]),
                ]
            elif flag == UNDERFITTING:
                moves = [
                    ("learning_rate", "times", s["step"]),
                    ("weight_decay", "divide", s["step"]),
                    ("dropout_rate", "plus", -s["dropout"]),
                ]
            elif flag == PLATEAU:
                moves = [("learning_rate", "divide", s["plateau"])]
            elif flag == OSCILLATION:
                moves = [("learning_rate", "divide", s["step"]), ("batch_size", "notch", 1)]
            elif flag == SLOW_CONVERGENCE:
                moves = [
                    ("learning_rate", "times", s["slow"]),
                    ("batch_size", "notch", -1),
                    ("optimizer", "adam", 0),
                ]
            said = []
            for role, how, amount in moves:
                name = self._find(role, names)
                if name is None:
                    continue
                dim, old = self._dim(space, name), values[name]
                if how == "adam":
                    new = self._adam(dim, old)
                    if new is None:
                        continue
                elif not _is_number(old):
                    continue
                elif how == "times":
                    new = _times(dim, old, amount)
                elif how == "divide":
                    new = _clamp(dim, float(old) / amount)
                elif how == "plus":
                    new = _plus(dim, old, amount)
                else:
                    new = _notch(dim, old, amount)
                if new == old:
                    said.append(f"{name} stays {_fmt(old)} (at its bound)")
                else:
                    said.append(f"{name} {_fmt(old)} -> {_fmt(new)}")
                    values[name] = new
            if said:
                parts.append(f"{flag}: " + ", ".join(said))
        return parts

    @staticmethod
    def _adam(dim: Any, old: Any) -> Any:
        """``adam`` in place of ``sgd`` when the choice offers it, else ``None``."""
        if not isinstance(old, str) or old.strip().lower() != "sgd":
            return None
        options = list(dim.values) if isinstance(dim, Choice) else ["adam"]
        for v in options:
            if isinstance(v, str) and v.lower() == "adam":
                return v
        return None

    def _explore(
        self,
        context: AdviceContext,
        values: dict[str, Any],
        names: list[str],
        seen: set[tuple],
    ) -> str:
        """Perturb one or two dimensions at random, in place; the rationale part."""
        space = context.space
        movable = [
            n for n in names
            if not (isinstance(self._dim(space, n), Choice) and len(space[n].values) < 2)
            and (_is_number(values[n]) or isinstance(self._dim(space, n), Choice))
        ]
        if not movable:
            return "nothing to explore"
        rng = np.random.default_rng(self.seed + int(context.round))
        start = dict(values)
        for _ in range(10):
            trial = dict(start)
            k = min(len(movable), int(rng.integers(1, 3)))
            picked = sorted(rng.choice(len(movable), size=k, replace=False).tolist())
            for i in picked:
                name = movable[i]
                trial[name] = self._perturb(self._dim(space, name), trial[name], rng)
            if _key(trial, names) not in seen:
                break
        values.update(trial)
        moved = [f"{n} {_fmt(start[n])} -> {_fmt(values[n])}" for n in names
                 if values[n] != start[n]]
        return "exploring: " + (", ".join(moved) if moved else "no room to move")

    def _perturb(self, dim: Any, value: Any, rng: np.random.Generator) -> Any:
        up = bool(rng.integers(0, 2))
        if isinstance(dim, Choice):
            if not dim.numeric:
                others = [v for v in dim.values if v != value]
                return others[int(rng.integers(0, len(others)))]
            new = _notch(dim, value, 1 if up else -1)
            return new if new != value else _notch(dim, value, -1 if up else 1)
        lo, hi = self._steps["explore"]
        if isinstance(dim, LogUniform) or dim is None:
            factor = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            new = _times(dim, value, factor if up else 1 / factor)
            return new if new != value else _times(dim, value, 1 / factor if up else factor)
        a, b = self._steps["explore_linear"]
        delta = rng.uniform(a, b) * (float(dim.high) - float(dim.low))
        if isinstance(dim, IntUniform):
            delta = max(1.0, round(delta))
        new = _plus(dim, value, delta if up else -delta)
        return new if new != value else _plus(dim, value, -delta if up else delta)

    @staticmethod
    def _midway(dim: Any, mine: Any, theirs: Any) -> Any:
        """The point halfway between two values of ``dim`` (``mine`` when there is
        none: non-numeric choices)."""
        if not (_is_number(mine) and _is_number(theirs)):
            return mine
        a, b = float(mine), float(theirs)
        if isinstance(dim, LogUniform) and a > 0 and b > 0:
            return _clamp(dim, math.sqrt(a * b))
        if isinstance(dim, Choice):
            values = [float(v) for v in dim.values]
            i = min(range(len(values)), key=lambda j: abs(values[j] - a))
            j = min(range(len(values)), key=lambda j: abs(values[j] - b))
            return dim.values[i + int((j - i) / 2)]  # rounds toward mine
        return _clamp(dim, (a + b) / 2)

    # -- the role ---------------------------------------------------------------------
    def propose(self, context: AdviceContext, other: Advice | None) -> Advice:
        """Changes for ``context.flags`` (see the class docstring).

        Args:
          context: the space, the values in force, the flags, the earlier trials.
          other: the other consultant's last proposal, or ``None``.

        Returns:
          :class:`~hagfish_jax.shell.advisors.context.Advice` with the names it changes.
        """
        space = context.space
        current = dict(context.hparams)
        start, note = _starting_point(context)
        values = dict(start)
        names = self._names(context, values)
        parts = self._apply(tuple(context.flags), values, names, space)
        if all(values[n] == start[n] for n in names):
            seen = {_key(current, names), _key(start, names)}
            for t in context.trials:
                if isinstance(t, Mapping) and isinstance(t.get("hparams"), Mapping):
                    seen.add(_key({**start, **t["hparams"]}, names))
            parts.append(self._explore(context, values, names, seen))
        if note:
            parts.insert(0, note)
        if other is not None and self.style == "cautious" and isinstance(other.hparams, Mapping):
            theirs = validate(other.hparams, space).hparams
            both = [n for n in names
                    if values[n] != start[n] and n in theirs and theirs[n] != start[n]
                    and theirs[n] != values[n]]
            for n in both:
                values[n] = self._midway(self._dim(space, n), values[n], theirs[n])
            if both:
                parts.append("met the other proposal halfway on " + ", ".join(both))
        changed = {n: values[n] for n in names if n not in current or values[n] != current[n]}
        checked = validate(changed, space).hparams
        return Advice(checked, "; ".join(parts), tuple(context.flags))
