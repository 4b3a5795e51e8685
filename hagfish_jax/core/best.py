"""The best member across windows and members: the rule that picks the model a tuned
run returns (``Carry.best``; see ``select`` in :func:`hagfish_jax.program.build`).

``select="score"``: the best score; among equal scores (common on a small validation
set, where accuracy moves in steps of 1/n) the lower loss. ``select="loss"``: the
lowest loss; among equal losses the better score. The loss is ``"tie_break"`` or
else ``"val_loss"`` from the task's ``evaluate``. A non-finite score (diverged,
masked, never scored) is never picked.

Why two rules: on a small validation set the score (an accuracy moving in steps of
1/n) picks, among many near-equal models, one whose lucky validation draw rose above
the rest, and that model is often overconfident (the winner's curse). The loss,
continuous and a proper scoring rule, is the steadier choice there
(``benchmarks/selection.py``). The tuner ranks members by ``score`` either way, and
each member's own rollback snapshot is its best score.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .carry import Best

__all__ = ["SELECTS", "check_select", "member", "rank", "update"]

SELECTS = ("score", "loss")


def check_select(where: str, select: str) -> str:
    """``select`` if it is one of :data:`SELECTS`, else a ValueError naming them."""
    if select not in SELECTS:
        raise ValueError(f"{where}: select must be 'score' or 'loss', got {select!r}")
    return select


def member(tree: Any, i: jax.Array) -> Any:
    """Member ``i`` of a population pytree (every leaf indexed on its leading axis)."""
    return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, 0, keepdims=False), tree)


def rank(select: str, score: jax.Array, loss: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The selection key ``(first, second)``: higher wins, ``second`` breaks ties.

    >>> import jax.numpy as jnp
    >>> first, second = rank("loss", jnp.array([0.9, jnp.nan]), jnp.array([0.3, 0.1]))
    >>> first.tolist(), second.tolist()  # the NaN-scored member is never picked
    ([-0.30000001192092896, -inf], [0.8999999761581421, -inf])
    """
    ok = jnp.isfinite(score)
    safe = jnp.where(ok, score, -jnp.inf)
    loss = jnp.where(jnp.isfinite(loss), loss, jnp.inf)
    if select == "score":
        return safe, -loss
    return jnp.where(ok, -loss, -jnp.inf), safe


def update(
    best: Best, select: str, population: int | None, state, hp, score, loss, window
) -> Best:
    """``best``, or this window's leader when it ranks higher under ``select``.

    For a population, ``score`` and ``loss`` are ``(N,)`` and the leader is the
    member that ranks first (ties on ``first`` go to ``second``).
    """
    score = jnp.where(jnp.isfinite(score), score, -jnp.inf)
    loss = jnp.where(jnp.isfinite(loss), loss, jnp.inf)
    first, second = rank(select, score, loss)
    if population is None:
        leader, one, one_hp = jnp.asarray(0, jnp.int32), state, hp
    else:
        tied = first == jnp.max(first)
        leader = jnp.argmax(jnp.where(tied, second, -jnp.inf)).astype(jnp.int32)
        leader = jnp.where(jnp.any(tied & (second > -jnp.inf)), leader, jnp.argmax(first))
        one, one_hp = member(state, leader), member(hp, leader)
        first, second = first[leader], second[leader]
        score, loss = score[leader], loss[leader]
    held_first, held_second = rank(select, best.score, best.loss)
    tie = (first == held_first) & (first > -jnp.inf) & (second > held_second)
    better = (first > held_first) | tie
    new = Best(one, one_hp, score, jnp.asarray(window, jnp.int32), leader, loss)
    # a scalar flag: one branch, so a window that is not the best copies nothing
    return jax.lax.cond(better, lambda: new, lambda: best)
