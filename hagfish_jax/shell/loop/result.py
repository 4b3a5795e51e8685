"""``LoopResult``: how a run ended, its best state, and a printable summary."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...core.ensemble import weights as ensemble_weights
from .steering import floats

__all__ = ["ENDED", "LoopResult", "Progress", "finish", "population_ensemble", "variants_ensemble"]

# How a run ends for good: resumed from a checkpoint that says so, it trains no more.
# ("budget" and "stopped" go on; a stream that ended goes on with what it yields next.)
ENDED = ("target", "dormant", "spawn budget spent")


@dataclasses.dataclass
class LoopResult:
    """How a run ended, and its best state.

    Attributes:
      state: the best state (one member's, for a population); the current state
        when nothing finite was ever scored.
      reason: ``"budget"``, ``"target"``, ``"stopped"``, ``"dormant"``, ``"spawn budget
        spent"``, ``"stream ended"`` (live data ran out) or ``"error: ..."``.
      best_score, best_window: the best score and the window that reached it.
      windows, evaluations: windows trained and evaluated.
      rollbacks: rollbacks done (members rolled back, for a population).
      spawns: variants spawned on DORMANT.
      phase, regime: the backoff's last phase and the run's regime.
      hparams: the best state's hyperparameters (host floats).
      history: one dict per evaluation (window, score, train_score, phase; for a
        population the headline member's, with ``member``).
      error: the exception that ended the run, if any.
      callback_errors: what callbacks and the advisor raised.
      ensemble: ``[{"window" or "member", "score", "weight"}]``; ``ensemble_states``
        the matching states.
      carry: the tuned program's final :class:`hagfish_jax.Carry` (every member, the
        tuner state, snapshots, the best member).
      population: N, or ``None`` for a single run.
      best_member: the best state's member index (0 for a single run).
    """

    state: Any
    reason: str
    best_score: float
    best_window: int
    windows: int
    evaluations: int
    rollbacks: int
    spawns: int
    phase: str
    regime: str
    hparams: dict[str, float]
    history: list[dict[str, Any]]
    error: BaseException | None = None
    callback_errors: list[str] = dataclasses.field(default_factory=list)
    ensemble: list[dict[str, float]] = dataclasses.field(default_factory=list)
    ensemble_states: list[Any] = dataclasses.field(default_factory=list)
    carry: Any = None
    population: int | None = None
    best_member: int = 0

    def summary(self) -> dict[str, Any]:
        """The run in a flat dict (what :meth:`report` prints)."""
        last = self.history[-1] if self.history else {}
        gap = None
        best = next((h for h in self.history if h["window"] == self.best_window), None)
        if best is not None and best.get("train_score") is not None:
            gap = best["train_score"] - best["score"]
        out = {
            "reason": self.reason,
            "best_score": self.best_score,
            "best_window": self.best_window,
            "validation_score": last.get("score"),
            "generalisation_gap": gap,
            "windows": self.windows,
            "evaluations": self.evaluations,
            "rollbacks": self.rollbacks,
            "spawns": self.spawns,
            "phase": self.phase,
            "regime": self.regime,
            "hparams": self.hparams,
        }
        if self.population is not None:
            out["population"] = self.population
            out["best_member"] = self.best_member
        key = "member" if self.population is not None else "window"
        out["ensemble"] = {f"{key} {m[key]}": m["weight"] for m in self.ensemble}
        return out

    def report(self, file=None) -> dict[str, Any]:
        """Print the summary and return it."""
        s = self.summary()
        width = max(len(k) for k in s)
        for k, v in s.items():
            if isinstance(v, float):
                v = f"{v:.6g}"
            elif isinstance(v, dict):
                v = ", ".join(f"{a}={b:.4g}" for a, b in v.items())
            print(f"{k:<{width}}  {v}", file=file)
        return s


def variants_ensemble(members: dict[int, tuple[float, Any]], size: int) -> tuple[list, list]:
    """A single run's ensemble: the best states of its variants (``window -> (score,
    state)``), best first, at most ``size``, weighted by their scores."""
    kept = sorted(members.items(), key=lambda m: -m[1][0])[:size]
    weights = ensemble_weights(jnp.asarray([m[1][0] for m in kept])) if kept else []
    ensemble = [
        {"window": w, "score": s, "weight": float(wt)} for (w, (s, _)), wt in zip(kept, weights)
    ]
    return ensemble, [st for _, (_, st) in kept]


def population_ensemble(carry: Any, size: int, loop: Any = None) -> tuple[list, list]:
    """A population's ensemble: its best ``size`` alive members by their last scores
    (``loop``: the Loop whose mesh holds them, if it has one)."""
    mesh = getattr(loop, "_mesh", None)
    get = jax.device_get if mesh is None else mesh.get
    score, alive = (np.asarray(a) for a in get((carry.score, carry.alive)))
    finite = np.where(alive & np.isfinite(score), score, -np.inf)
    order = [int(i) for i in np.argsort(-finite, kind="stable") if np.isfinite(finite[i])]
    order = order[:size]
    weights = ensemble_weights(jnp.asarray(finite[order])) if order else []
    ensemble = [
        {"member": i, "score": float(score[i]), "weight": float(wt)}
        for i, wt in zip(order, weights)
    ]
    if mesh is not None:  # one compiled gather, replicated: every process holds them
        return ensemble, mesh.members(carry.state, order)
    return ensemble, [jax.tree.map(lambda x, i=i: x[i], carry.state) for i in order]


@dataclasses.dataclass
class Progress:
    """The host-side bookkeeping of one ``Loop.run`` (what becomes its result)."""

    start: int = 0
    history: list = dataclasses.field(default_factory=list)
    rollbacks: int = 0
    spawns: int = 0
    best_score: float = -math.inf
    best_window: int = -1
    members: dict = dataclasses.field(default_factory=dict)  # window -> (score, state)
    reason: str = "budget"
    error: BaseException | None = None
    on_target: int = 0
    save: tuple | None = None  # (score,): a checkpoint due at the end of this window


def finish(loop: Any, carry: Any, windows: int, r: Progress) -> LoopResult:
    """The :class:`LoopResult` of a run that trained ``windows`` windows: the best
    state (or the current one if nothing finite was scored), saved one last time (a
    run that raised: as of its last completed window, so that it resumes there)."""
    scored = r.best_window >= 0
    member = int(loop._get(carry.best.member)) if scored else 0
    if scored:
        final, hp = carry.best.state, carry.best.hparams
    else:
        final = carry.state
        if loop._mesh is not None:
            final = loop._mesh.members(final, [0])[0]
        elif loop.population is not None:
            final = jax.tree.map(lambda x: x[0], final)
        hp = loop._in_force(final)
    if loop.checkpoints is not None and scored:
        last, saved = windows - 1, r
        if r.error is not None:  # the carry is that of the last window that completed
            last = int(loop._get(carry.window)) - 1
            kept = [h for h in r.history if h["window"] <= last]
            saved = dataclasses.replace(r, history=kept)  # (the result keeps them all)
        if last >= 0:  # a run that failed keeps what it finished: it resumes from there
            loop._save(saved, last, carry, None)
    if loop.population is None:
        if scored:
            r.members[r.best_window] = (r.best_score, final)
        ensemble, states = variants_ensemble(r.members, loop.max_ensemble_size)
    else:
        ensemble, states = population_ensemble(carry, loop.max_ensemble_size, loop)
    result = LoopResult(
        state=final,
        reason=r.reason,
        best_score=r.best_score,
        best_window=r.best_window,
        windows=windows,
        evaluations=len(r.history),
        rollbacks=r.rollbacks,
        spawns=r.spawns,
        phase=loop.backoff.phase.value,
        regime=loop.regime.classify([h["score"] for h in r.history]).value,
        hparams=floats(loop._get(hp)),
        history=r.history,
        error=r.error,
        callback_errors=list(loop.callback_errors),
        ensemble=ensemble,
        ensemble_states=states,
        carry=carry,
        population=loop.population,
        best_member=member,
    )
    return result
