"""``LoopResult``: how a run ended, its best state, and a printable summary."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["LoopResult"]


@dataclasses.dataclass
class LoopResult:
    """How a run ended, and its best state.

    Attributes:
      state: the best state (one member's, for a population); the current state
        when nothing finite was ever scored.
      reason: ``"budget"``, ``"target"``, ``"stopped"``, ``"dormant"``, ``"spawn budget
        spent"`` or ``"error: ..."``.
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
