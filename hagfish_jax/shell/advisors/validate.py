"""Proposals are data: checked against the space, never trusted, never executed.

:func:`validate` turns whatever an advisor returned (a mapping parsed from a model's
answer, a heuristic's dict) into values the space allows, and records every
adjustment with its reason:

* a name outside the space (or outside ``allowed``) is dropped;
* a value of the wrong type is refused (a string or a bool for a number, a number for
  a non-numeric choice that is not one of its values, a list, ``None``, ...);
* a non-finite number is refused;
* a number outside its interval is clamped to the bound;
* a number between the values of a numeric choice snaps to the nearest value; a
  non-numeric choice accepts its values by name, case and surrounding blanks ignored;
* an integer dimension rounds to the nearest integer.

>>> import hagfish_jax as hj
>>> from hagfish_jax.shell.advisors.validate import validate
>>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1),
...                  optimizer=hj.Choice(["adam", "sgd"]))
>>> checked = validate({"learning_rate": 3.0, "optimizer": " SGD ", "momentum": 0.9}, space)
>>> checked.hparams
{'learning_rate': 0.1, 'optimizer': 'sgd'}
>>> for a in checked.adjustments:
...     print(a["name"], "-", a["reason"])
learning_rate - clamped to the upper bound
optimizer - matched a choice by name
momentum - unknown name dropped
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

import numpy as np

from ...core.dimensions import Choice, IntUniform, LogUniform, Uniform
from ...core.space import Space

__all__ = ["Checked", "validate"]


class Checked(NamedTuple):
    """The values that passed (plain Python, in the space) and what was changed."""

    hparams: dict[str, Any]
    adjustments: list[dict[str, Any]]


def _real(value: Any) -> bool:
    """A real number: a Python or NumPy one, or a 0-d array of an integer or float
    dtype (what a jax advisor computes); never a bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return getattr(value, "shape", None) == () and kind in ("i", "u", "f")


def _shown(value: Any) -> Any:
    """A JSON-safe, short rendering of what was proposed (for the records)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, str) else value[:200]
    return repr(value)[:200]


_REFUSED = object()  # not None: a choice may hold None (e.g. no normalisation)


def _check(name: str, dim: Any, value: Any) -> tuple[Any, str | None]:
    """``(value, reason)``: ``reason`` is ``None`` when taken as is; the value is
    ``_REFUSED`` when refused."""
    if isinstance(dim, Choice) and not dim.numeric:
        # the choice's own object, matched by type as well as value: 1 is not True
        for v in dim.values:
            if type(v) is type(value) and v == value:
                return v, None
        if isinstance(value, str):
            wanted = value.strip().lower()
            for v in dim.values:
                if str(v).lower() == wanted:
                    return v, "matched a choice by name"
        return _REFUSED, f"refused: not one of {list(dim.values)}"
    if not _real(value):
        return _REFUSED, f"refused: expected a number, got {type(value).__name__}"
    try:
        v = float(value)
    except OverflowError:  # an integer of hundreds of digits, valid JSON
        v = math.inf
    if not math.isfinite(v):
        return _REFUSED, "refused: not a finite number"
    if isinstance(dim, Choice):
        table = [float(c) for c in dim.values]
        i = int(np.argmin([abs(c - v) for c in table]))
        snapped = dim.values[i]
        return snapped, None if float(snapped) == v else "snapped to the nearest choice"
    if isinstance(dim, (Uniform, LogUniform, IntUniform)):
        lo, hi = float(dim.low), float(dim.high)
        reason = None
        if v < lo:
            v, reason = lo, "clamped to the lower bound"
        elif v > hi:
            v, reason = hi, "clamped to the upper bound"
        if isinstance(dim, IntUniform):
            r = int(round(v))
            if r != v and reason is None:
                reason = "rounded to an integer"
            return r, reason
        return v, reason
    return v, None


def validate(
    proposal: Any, space: Space | None, allowed: Collection[str] | None = None
) -> Checked:
    """Check ``proposal`` against ``space``; see the module docstring.

    Args:
      proposal: what the advisor returned; anything that is not a mapping of names
        to values is refused whole (one adjustment, no values).
      space: bounds every value; ``None`` keeps finite numbers under any name.
      allowed: names that may change here (e.g. the dynamic ones inside a running
        Loop); others are dropped with the reason ``"not changeable here"``.

    Returns:
      :class:`Checked`.
    """
    adjustments: list[dict[str, Any]] = []
    if not isinstance(proposal, Mapping):
        adjustments.append(
            {"name": None, "proposed": _shown(proposal), "applied": None,
             "reason": "refused: the proposal is not a mapping of names to values"}
        )
        return Checked({}, adjustments)
    out: dict[str, Any] = {}
    for name, value in proposal.items():
        note = {"name": str(name), "proposed": _shown(value)}
        if space is not None and name not in space:
            adjustments.append({**note, "applied": None, "reason": "unknown name dropped"})
            continue
        if allowed is not None and name not in allowed:
            adjustments.append({**note, "applied": None, "reason": "not changeable here"})
            continue
        if space is None:
            checked, reason = _check(str(name), None, value)
        else:
            checked, reason = _check(str(name), space[name], value)
        if checked is _REFUSED:
            adjustments.append({**note, "applied": None, "reason": reason})
            continue
        if reason is not None:
            adjustments.append({**note, "applied": checked, "reason": reason})
        out[str(name)] = checked
    return Checked(out, adjustments)
