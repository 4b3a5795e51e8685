"""The typed result of a demo run: :class:`RunSummary` (what the CLI prints and the run
directory's ``summary.json`` holds) and :class:`DemoRun` (the summary, the rows, the
events and the loop's own result)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["DemoRun", "RunSummary"]


@dataclasses.dataclass
class RunSummary:
    """One demo run, summarised. Scores are the task's ``score`` (higher is better;
    ``score_name`` says what it measures); costs are in the task's ``cost_unit``.

    Attributes:
      task, tuner, model: what ran.
      score_name: what the score measures (``"val_accuracy"``, ``"return"``, ...).
      population: members, or ``None`` for a single run.
      windows: windows trained (a PBT generation is one window).
      seed: the seed.
      best_window, best_member, best_score, best_hparams: the best member seen, on
        validation data, and the hyperparameters it trained with.
      test_score: the best member's score on held-out data (measured once), if the
        task has a test split.
      final_score: the headline score of the last evaluation.
      ensemble_val_score, ensemble_test_score, ensemble_weights: the score-weighted
        ensemble of the final alive members (classification tasks).
      exploits, rollbacks, prunes, spawns: how often each happened.
      halving, stages: successive halving (members x windows per stage).
      final_members: the members alive at the end.
      total_cost, cost_unit: the cost spent by members that trained.
      steps_per_window, batch_size, total_steps: optimizer steps (classification).
      target, first_window_at_target: the window the headline score first reached
        ``target`` (CartPole: 475), if one is set.
      reason: how the loop ended (``"budget"``, ``"dormant"``, ...).
      wall_time_s, jax_version, backend: where and how long (the run from building the
        task to its summary, compiling included; not the start of Python, the imports or
        writing the run directory and its figures).
    """

    task: str
    tuner: str
    model: str | None
    score_name: str
    population: int | None
    windows: int
    seed: int
    best_window: int
    best_member: int
    best_score: float
    best_hparams: dict[str, float]
    test_score: float | None = None
    final_score: float | None = None
    ensemble_val_score: float | None = None
    ensemble_test_score: float | None = None
    ensemble_weights: list[float] = dataclasses.field(default_factory=list)
    exploits: int = 0
    rollbacks: int = 0
    prunes: int = 0
    spawns: int = 0
    halving: int = 0
    stages: list[list[int]] = dataclasses.field(default_factory=list)
    final_members: list[int] = dataclasses.field(default_factory=list)
    total_cost: float = 0.0
    cost_unit: str = "windows"
    steps_per_window: int | None = None
    batch_size: int | None = None
    total_steps: int | None = None
    target: float | None = None
    first_window_at_target: int | None = None
    reason: str = "budget"
    wall_time_s: float = 0.0
    jax_version: str = ""
    backend: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the run directory's ``summary.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSummary:
        """Read back :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def lines(self, out: str | Path | None = None) -> list[tuple[str, str]]:
        """``(label, value)`` pairs of the printed report."""
        s = self.score_name.replace("_", " ")
        test = self.score_name.replace("val_", "test_", 1).replace("_", " ")
        lines: list[tuple[str, str]] = []
        if self.population is not None:
            steps = f" ({self.total_steps} steps)" if self.total_steps else ""
            lines.append(
                ("population", f"{self.population} members x {self.windows} windows{steps}")
            )
            if self.halving:
                stages = ", ".join(f"{m} x {g}" for m, g in self.stages)
                lines.append(("successive halving", f"members x windows: {stages}"))
            lines.append(("best member", f"member {self.best_member} at window {self.best_window}"))
        else:
            lines.append(("best window", f"{self.best_window} of {self.windows}"))
        lines += [(f"  {k}", f"{v:.4g}") for k, v in self.best_hparams.items()]
        lines.append((f"best {s}", f"{self.best_score:.4f}"))
        if self.test_score is not None:
            lines.append((f"{test} (best)", f"{self.test_score:.4f}"))
        if self.ensemble_val_score is not None:
            lines.append((f"ensemble {s}", f"{self.ensemble_val_score:.4f}"))
        if self.ensemble_test_score is not None:
            lines.append((f"ensemble {test}", f"{self.ensemble_test_score:.4f}"))
        if self.final_score is not None and self.population is None:
            lines.append((f"final {s}", f"{self.final_score:.4f}"))
        if self.target is not None:
            lines.append((f"first window at {self.target:g}", str(self.first_window_at_target)))
        if self.population is not None:
            lines.append(("exploits", str(self.exploits)))
        lines.append(("rollbacks", str(self.rollbacks)))
        lines.append((f"cost ({self.cost_unit})", f"{self.total_cost:.0f}"))
        lines.append(("loop ended", self.reason))
        lines.append(("wall time (the run)", f"{self.wall_time_s:.1f} s, compiling included"))
        if out is not None:
            lines.append(("run directory", str(out)))
        return lines

    def report(self, out: str | Path | None = None, file=None) -> None:
        """Print :meth:`lines` as an aligned table."""
        rows = self.lines(out)
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{width}}  {v}", file=file)


@dataclasses.dataclass
class DemoRun:
    """What a demo run returns.

    Attributes:
      summary: the :class:`RunSummary`.
      rows: one dict per member and evaluated window (record column names).
      events: exploits, prunes, rollbacks, spawns and the loop's transitions.
      meta: the run's identity for :class:`~hagfish_jax.shell.records.RunRecords`.
      result: the :class:`hagfish_jax.LoopResult` (best state, final carry, history).
    """

    summary: RunSummary
    rows: list[dict[str, Any]]
    events: list[dict[str, Any]]
    meta: dict[str, Any]
    result: Any = None
