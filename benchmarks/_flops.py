"""Floating-point operation counts of a traced program, for ``device.py``.

XLA's ``Compiled.cost_analysis()`` counts the body of a loop once, whatever its trip
count (a ``lax.scan`` of 100 matrix products reports one), and the tuned program is
scans inside scans. :func:`count` walks the program's jaxpr instead and multiplies
each ``scan`` body by its length:

* a matrix product (``dot_general``) is ``2 * M * N * K``, batch dimensions
  included; a convolution is ``2 *`` output size ``*`` the inputs each output reads;
* a floating-point elementwise op is one per output element, a reduction or a
  cumulative op one per input element;
* data movement (reshape, gather, select, ...), integer and random-bit ops are free;
* ``cond`` counts its costliest branch; a ``while`` loop's trip count is unknown, so
  its body counts once and the count is flagged as a lower bound.

>>> import jax, jax.numpy as jnp
>>> def f(x):
...     return jax.lax.scan(lambda c, _: (c @ x, None), x, None, length=10)[0]
>>> count(jax.make_jaxpr(f)(jnp.ones((8, 8))))
(10240.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["count", "xla_flops"]

_ELEMENTWISE = frozenset(
    """abs acos acosh add add_any asin asinh atan atan2 atanh cbrt ceil clamp cos cosh digamma
    div erf erf_inv erfc exp exp2 expm1 floor igamma integer_pow lgamma log log1p logistic
    max min mul neg nextafter pow rem round rsqrt sign sin sinh sqrt square sub tan tanh""".split()
)
_REDUCTIONS = frozenset(
    """argmax argmin cumlogsumexp cummax cummin cumprod cumsum reduce_max reduce_min
    reduce_prod reduce_sum""".split()
)


def _size(var: Any) -> int:
    return math.prod(getattr(var.aval, "shape", ()))


def _floating(var: Any) -> bool:
    dtype = getattr(var.aval, "dtype", None)
    try:
        return dtype is not None and np.issubdtype(dtype, np.inexact)
    except TypeError:  # extended dtypes (PRNG keys) are no numpy dtype
        return False


def _jaxprs(value: Any) -> Iterator[Any]:
    """The open jaxprs in an equation's parameter (a jaxpr, a closed one, or a sequence)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value, "consts"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _jaxprs(v)


def _dot(eqn: Any) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    shape = eqn.invars[0].aval.shape
    k = math.prod(shape[d] for d in lhs_contract)
    return 2.0 * _size(eqn.outvars[0]) * k


def _conv(eqn: Any) -> float:
    rhs = eqn.invars[1].aval.shape
    out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
    per_output = math.prod(rhs) / rhs[out_feature_dim]
    return 2.0 * _size(eqn.outvars[0]) * per_output


def _walk(jaxpr: Any) -> tuple[float, bool]:
    total, exact = 0.0, True
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "scan":
            flops, ok = _walk(next(_jaxprs(params["jaxpr"])))
            total, exact = total + params["length"] * flops, exact and ok
        elif name == "while":
            for key in ("cond_jaxpr", "body_jaxpr"):
                flops, _ = _walk(next(_jaxprs(params[key])))
                total += flops
            exact = False
        elif name == "cond":
            counted = [_walk(j) for j in _jaxprs(params["branches"])]
            total += max(f for f, _ in counted)
            exact = exact and all(ok for _, ok in counted)
        elif name == "dot_general":
            total += _dot(eqn)
        elif name == "conv_general_dilated":
            total += _conv(eqn)
        elif name in _ELEMENTWISE:
            total += sum(_size(v) for v in eqn.outvars if _floating(v))
        elif name in _REDUCTIONS:
            total += sum(_size(v) for v in eqn.invars if _floating(v))
        else:  # a call (jit, custom derivatives, remat, ...): its inner jaxprs
            for inner in (j for v in params.values() for j in _jaxprs(v)):
                flops, ok = _walk(inner)
                total, exact = total + flops, exact and ok
    return total, exact


def count(closed_jaxpr: Any) -> tuple[float, bool]:
    """Floating-point operations of one call of a traced program.

    Args:
      closed_jaxpr: ``jax.make_jaxpr(f)(*args)`` or ``jax.jit(f).trace(*args).jaxpr``.

    Returns:
      ``(flops, exact)``: ``exact`` is False when a ``while`` loop made the count a
      lower bound.
    """
    return _walk(next(_jaxprs(closed_jaxpr)))


def xla_flops(compiled: Any) -> float | None:
    """``compiled.cost_analysis()["flops"]``, which is a dict, a list of dicts (one per
    device program) or None depending on the jax release and backend; None when absent.
    Loop bodies count once (see the module's docstring)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        found = [c.get("flops") for c in cost if isinstance(c, dict)]
        found = [f for f in found if f is not None]
        return float(sum(found)) if found else None
    if isinstance(cost, dict) and cost.get("flops") is not None:
        return float(cost["flops"])
    return None
