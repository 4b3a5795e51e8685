"""Trial-level rounds: advise, train, diagnose, research, and again.

:func:`run_hpo` runs ``rounds`` trials of whole-run training. Round 0 trains the
starting configuration; after each trial the curves are diagnosed, the analyst names
keywords, the researcher looks remedies up, and the council (two consultants and a
supervisor, offline heuristics by default, LLMs with ``advisor="llm"``) proposes the
next trial's configuration inside the space. Everything goes to a run directory::

    OUT/
      run.json                  the configuration (no API keys: they are never stored)
      events.jsonl              fallbacks, adjustments, failed trials
      trials_summary.csv        one row per finished trial
      best_overall.json         the trial with the best validation accuracy
      trials/trial_000/
        proposal.json           the configuration this trial trains, and why
        metrics_epoch.csv       per epoch: losses, accuracies, F1, learning rate, cost
        analysis.json           diagnosis flags, trend features, keywords, research notes
        analysis_llm.txt        the LLM analyst's text (when an LLM analysed)
        advice.jsonl            every prompt and response of this trial's advice
        summary.json            best validation accuracy, test accuracy and F1, ...
        loss.png val_loss.png accuracy.png f1.png combined.png   (with matplotlib)

A trial is finished when its ``summary.json`` exists (written last). Killed and run
again with the same configuration, :func:`run_hpo` continues: finished trials are
read back, a trial that had its proposal but not its summary trains again with that
same proposal (no new advice is asked; its ``advice.jsonl`` is cut back to what the
proposal's advice wrote), a trial without a proposal is advised again from an empty
``advice.jsonl``, and the records end as they would have without the kill.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax

from ...core.space import Space
from .._files import _append, write_atomic
from ..advisors.context import AdviceContext, Result
from ..advisors.council import Council
from ..advisors.research import SearchResearcher, offline_search
from ..advisors.sanitize import Sanitizer
from ..advisors.validate import validate
from ..records import RunRecords
from .config import _MODELS, _NAMES, HpoConfig, HpoResult, task_family
from .executor import Executor, TrialFailed
from .plots import plot_trial

__all__ = ["HpoConfig", "HpoResult", "build_council", "run_hpo", "task_family"]

#: the task names each built-in task keeps from every agent-facing text
def _start(space: Space) -> dict[str, Any]:
    """Round 0's configuration: the usual defaults, inside the space."""
    wanted = {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "batch_size": 64,
        "weight_decay": 1e-4,
        "label_smoothing": 0.0,
    }
    return validate({k: v for k, v in wanted.items() if k in space}, space).hparams


def build_council(
    config: HpoConfig,
    sanitizer: Sanitizer,
    transcript: Callable[[dict], None],
    on_event: Callable[[dict], None],
    env: Mapping[str, str] | None = None,
    search: Callable[[str], Any] | None = None,
) -> Council:
    """The council ``config`` asks for: offline roles, or LLM roles over one
    OpenAI-compatible endpoint (each role its own model and key)."""
    if search is None and config.search == "offline":
        search = offline_search
    researcher = SearchResearcher(search)
    roles: dict[str, Any] = {}
    if config.advisor == "llm":
        from ..advisors import llm

        eps = llm.endpoints(
            config.llm_base_url,
            config.llm_model,
            dict(config.models),
            env=env,
            timeout=config.llm_timeout,
            retries=config.llm_retries,
        )
        roles = llm.llm_roles(eps, transcript=transcript, sanitizer=sanitizer, search=search)
    return Council(
        roles.get("consultant_a"),
        roles.get("consultant_b"),
        roles.get("supervisor"),
        roles.get("analyst"),
        roles.get("researcher") or researcher,
        turns=config.consult_turns,
        sanitizer=sanitizer,
        seed=config.seed,
        on_event=on_event,
    )


class _Trial:
    """Where one trial's advice events and transcript go (``advice.jsonl``)."""

    def __init__(self, records: RunRecords, sanitizer: Sanitizer):
        self.records, self.sanitizer, self.name = records, sanitizer, None

    def write(self, entry: dict) -> None:
        if self.name is None:
            return
        path = self.records.path / "trials" / self.name / "advice.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(self.sanitizer.clean_obj(entry), default=str, allow_nan=True)
        _append(path, line + "\n")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def run_hpo(
    config: HpoConfig,
    out: str | os.PathLike,
    *,
    env: Mapping[str, str] | None = None,
    search: Callable[[str], Any] | None = None,
    family: tuple[Callable[[int], Any], Space, int] | None = None,
    retryable: Callable[[BaseException], bool] | None = None,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    plots: bool = True,
) -> HpoResult:
    """Run (or continue) the rounds of ``config`` into the run directory ``out``.

    Args:
      config: see :class:`HpoConfig`; checked before anything runs.
      out: the run directory; an existing one with the same configuration continues.
      env: where API keys and LLM settings are read (default ``os.environ``).
      search: a web search or any ``query -> results`` callable (overrides
        ``config.search``).
      family: ``(build, space, n_train)`` instead of the built-in task (tests, your
        own task family).
      retryable: errors that step the batch size down, besides out of memory.
      progress: called after each trial with its index and summary.
      plots: draw each trial's figures (needs matplotlib; about a second a trial).
    """
    config.check()
    build, space, _ = family if family is not None else task_family(config)
    names = dict(_NAMES.get(config.task, {})) if config.anonymize else {}
    if config.anonymize:
        names.update(_MODELS)
        names.update({n: "NAME" for n in config.names})
    sanitizer = Sanitizer(names, enabled=config.anonymize)
    records = RunRecords(
        out,
        meta={"config": config.record(), "hparams": list(space.names), "kind": "hpo"},
        select="best_val_accuracy",
        metrics_name="metrics_epoch.csv",
    )
    trial = _Trial(records, sanitizer)

    def on_event(event: dict) -> None:
        trial.write(event)
        if event.get("kind") in ("fallback", "adjusted"):
            records.event(event["kind"], trial=trial.name, **{
                k: v for k, v in sanitizer.clean_obj(event).items() if k != "kind"
            })

    council = build_council(config, sanitizer, trial.write, on_event, env, search)
    executor = Executor(build, space, config.epochs, config.patience, retryable)
    failed: list[str] = []
    try:
        previous: AdviceContext | None = None
        done: list[dict[str, Any]] = []
        for r in range(config.rounds):
            name = f"trial_{r:03d}"
            trial.name = name
            tdir = records.path / "trials" / name
            summary = _read_json(tdir / "summary.json")
            if summary is None:
                proposal = _read_json(tdir / "proposal.json")
                advice_log = tdir / "advice.jsonl"
                if proposal is None:
                    # the advice starts afresh: a killed run of this trial may have
                    # written part of it
                    advice_log.unlink(missing_ok=True)
                    proposal = _propose(council, space, previous, done, r, config.rounds)
                    tdir.mkdir(parents=True, exist_ok=True)
                    # what the advice wrote; a rerun of the trial starts its log from here
                    size = advice_log.stat().st_size if advice_log.exists() else 0
                    proposal["advice_log_bytes"] = size
                    write_atomic(tdir / "proposal.json", json.dumps(proposal, indent=2) + "\n")
                elif advice_log.exists():  # drop what a killed run of this trial appended
                    with open(advice_log, "r+b") as f:
                        f.truncate(int(proposal.get("advice_log_bytes", 0)))
                summary, reviewed = _execute(
                    executor, council, records, config, space, name, proposal, r, plots
                )
                if summary.get("status") == "failed":
                    records.event("trial_failed", trial=name, error=summary.get("error"))
                records.finish_trial(name, summary)
                if progress is not None:
                    progress(r, summary)
            else:
                reviewed = _reviewed(space, summary, records.rows(name), tdir)
            if summary.get("status") == "failed":
                failed.append(name)
            done.append(summary)
            previous = reviewed
        summaries = records.summaries()
        best = _read_json(records.path / "best_overall.json")
        records.write_summary({
            "trials": len(summaries),
            "failed": failed,
            "best_trial": None if best is None else best.get("trial"),
            "best_val_accuracy": None if best is None else best.get("best_val_accuracy"),
            "test_accuracy": None if best is None else best.get("test_accuracy"),
            "test_f1": None if best is None else best.get("test_f1"),
        })
        return HpoResult(records.path, summaries, best, failed)
    finally:
        records.close()


def _trials(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "hparams": s.get("effective_hparams") or s.get("hparams") or {},
            "val_accuracy": s.get("best_val_accuracy"),
            "val_loss": s.get("best_val_loss"),
            "status": s.get("status"),
        }
        for s in done
    ]


def _propose(
    council: Council,
    space: Space,
    previous: AdviceContext | None,
    done: list[dict[str, Any]],
    r: int,
    rounds: int,
) -> dict[str, Any]:
    if previous is None:
        return {"hparams": _start(space), "rationale": "starting configuration", "flags": []}
    context = previous._replace(trials=_trials(done), budget_left=rounds - r, round=r)
    base = {**_start(space), **dict(context.hparams)}
    advice = council.advise(context._replace(hparams=base))
    hparams = {**base, **advice.hparams}
    return {
        "hparams": hparams,
        "rationale": advice.rationale,
        "flags": list(advice.flags),
        "adjustments": council.adjustments,
    }


def _execute(executor, council, records, config, space, name, proposal, r, plots):
    key = jax.random.fold_in(jax.random.key(config.seed), r)
    hparams = proposal["hparams"]
    try:
        result = executor.run(hparams, key)
    except TrialFailed as err:
        summary = {
            "status": "failed",
            "error": str(err)[:500],
            "attempts": err.attempts,
            "hparams": hparams,
            "val_and_test_same_dataset": False,
        }
        context = AdviceContext(space, hparams, (), ("failed",), {}, (), None, r, (), ())
        return summary, context
    records.log(name, result.rows)
    summary = {**result.summary, "proposal_rationale": proposal.get("rationale", "")}
    # the history as recorded, so a resumed run advises from exactly the same rows
    history = _history(records.rows(name))
    context = AdviceContext(space, result.summary["effective_hparams"], history, round=r)
    reviewed = council.review(context)
    tdir = records.path / "trials" / name
    analysis = {
        "flags": list(reviewed.flags),
        "features": dict(reviewed.features),
        "keywords": list(reviewed.keywords or ()),
        "notes": [n._asdict() for n in reviewed.notes],
        "analyst": council.analysed_by,
    }
    write_atomic(tdir / "analysis.json", json.dumps(analysis, indent=2, allow_nan=True) + "\n")
    text = council.analysis.text if council.analysis is not None else ""
    if text and council.analysed_by.startswith("LLM"):
        write_atomic(tdir / "analysis_llm.txt", text + "\n")
    if plots:
        plot_trial(result.rows, tdir)
    return summary, reviewed


def _history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "window"} for row in rows]


def _reviewed(space: Space, summary: dict, rows: list, tdir: Path) -> AdviceContext:
    """The reviewed context of a finished trial, read back from its records."""
    if summary.get("status") == "failed":
        hp = summary.get("hparams") or {}
        return AdviceContext(space, hp, (), ("failed",), {}, (), None, 0, (), ())
    analysis = _read_json(tdir / "analysis.json") or {}
    notes = tuple(Result(**n) for n in analysis.get("notes", []))
    return AdviceContext(
        space,
        summary.get("effective_hparams") or {},
        _history(rows),
        tuple(analysis.get("flags", ())),
        analysis.get("features", {}),
        notes,
        keywords=tuple(analysis.get("keywords", ())),
    )
