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
proposal's advice wrote), and the records end as they would have without the kill.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax

from ...core.dimensions import Choice
from ...core.space import Space
from .._files import _append, write_atomic
from ..advisors.context import AdviceContext, Result
from ..advisors.council import Council
from ..advisors.research import SearchResearcher, offline_search
from ..advisors.sanitize import Sanitizer
from ..advisors.validate import validate
from ..records import RunRecords
from .executor import Executor, TrialFailed, batch_choices
from .plots import plot_trial

__all__ = ["HpoConfig", "HpoResult", "build_council", "run_hpo", "task_family"]

#: the task names each built-in task keeps from every agent-facing text
_NAMES = {
    "digits": {"digits": "DATASET", "mnist": "DATASET"},
    "breast_cancer": {"breast cancer": "DATASET", "breast_cancer": "DATASET", "wdbc": "DATASET"},
}
_MODELS = {"mlp": "MODEL", "cnn": "MODEL", "multilayer perceptron": "MODEL"}


@dataclasses.dataclass(frozen=True)
class HpoConfig:
    """What ``hagfish hpo`` runs. API keys are not part of it: they come from the
    environment only (see :func:`hagfish_jax.shell.advisors.llm.endpoints`).

    Attributes:
      task: ``"digits"`` or ``"breast_cancer"``.
      model: ``"mlp"`` or ``"cnn"`` (digits).
      train_fraction: share of the digits train split kept (0.25: the harder variant).
      rounds, epochs, patience: trials, most epochs per trial, early-stopping patience.
      consult_turns: consultant turns per round.
      seed: seeds the data split, the training and the offline advisors.
      advisor: ``"heuristic"`` (offline) or ``"llm"``.
      search: ``"offline"`` (the shipped knowledge base) or ``"none"``.
      anonymize: clean dataset and model names from every agent-facing text.
      names: more names to clean.
      llm_base_url, llm_model: the endpoint and model every LLM role uses...
      models: ...unless a role has its own model here (``{"supervisor": "..."}``).
      llm_timeout, llm_retries: per request.
      hidden: the network's hidden widths.
    """

    task: str = "digits"
    model: str = "mlp"
    train_fraction: float = 1.0
    rounds: int = 10
    epochs: int = 20
    patience: int = 8
    consult_turns: int = 2
    seed: int = 0
    advisor: str = "heuristic"
    search: str = "offline"
    anonymize: bool = True
    names: tuple[str, ...] = ()
    llm_base_url: str | None = None
    llm_model: str | None = None
    models: tuple[tuple[str, str], ...] = ()
    llm_timeout: float = 60.0
    llm_retries: int = 3
    hidden: tuple[int, ...] = (64,)

    def check(self) -> None:
        """Refuse bad values before anything runs."""
        if self.task not in _NAMES:
            raise ValueError(f"hpo: task must be one of {sorted(_NAMES)}, got {self.task!r}")
        if self.model not in ("mlp", "cnn") or (self.task != "digits" and self.model != "mlp"):
            raise ValueError(f"hpo: model {self.model!r} is not available for {self.task!r}")
        for name in ("rounds", "epochs", "patience", "consult_turns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"hpo: {name} must be an integer >= 1, got {v!r}")
        if not 0.0 < float(self.train_fraction) <= 1.0:
            raise ValueError(f"hpo: train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.advisor not in ("heuristic", "llm"):
            raise ValueError(f"hpo: advisor must be 'heuristic' or 'llm', got {self.advisor!r}")
        if self.search not in ("offline", "none"):
            raise ValueError(f"hpo: search must be 'offline' or 'none', got {self.search!r}")

    def record(self) -> dict[str, Any]:
        """The configuration as stored in ``run.json``."""
        out = dataclasses.asdict(self)
        out["models"] = dict(self.models)
        return out


@dataclasses.dataclass
class HpoResult:
    """What :func:`run_hpo` returns: the finished trials' summaries and the best."""

    out: Path
    summaries: dict[str, dict[str, Any]]
    best: dict[str, Any] | None
    failed: list[str]


def task_family(config: HpoConfig) -> tuple[Callable[[int], Any], Space, int]:
    """``(build, space, n_train)``: the built-in task for a batch size, the space of
    reference (its batch sizes cut to the train split) and the train split's size."""
    from ...tasks import classification

    if config.task == "digits":
        from ...tasks.digits import load_digits_split

        data = load_digits_split(config.seed, train_fraction=config.train_fraction)
        num_classes = 10
    else:
        from ...tasks.breast_cancer import load_breast_cancer_split

        data = load_breast_cancer_split(config.seed)
        num_classes = 2
    n_train = len(data.y_train)
    base = classification.hpo_space
    sizes = batch_choices(base, n_train)
    if not sizes:
        raise ValueError(f"hpo: the train split ({n_train} examples) is below every batch size")
    dims = dict(base.dims)
    dims["batch_size"] = Choice(list(sizes))
    space = Space(**dims)

    def build(batch_size: int) -> Any:
        return classification.make_task(
            data,
            model=config.model,
            batch_size=int(batch_size),
            hidden=config.hidden,
            num_classes=num_classes,
            name=config.task,
            optimizers=("adam", "sgd"),
        )

    return build, space, n_train


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
