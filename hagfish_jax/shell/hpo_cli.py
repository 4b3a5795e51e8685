"""``hagfish hpo``: rounds of whole trials steered by the advisors' council (argument
parsing and printing; the rounds live in :mod:`hagfish_jax.shell.hpo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser"]


_ROLES = ("consultant_a", "consultant_b", "supervisor", "analyst", "researcher")


def _hpo(args: argparse.Namespace) -> int:
    try:
        import sklearn  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        print(f"hagfish hpo: {err}; pip install 'hagfish-jax[tasks]'", file=sys.stderr)
        return 1
    from .hpo import HpoConfig, run_hpo
    from .lock import LockedError
    from .records import DamagedRecordError

    models = tuple(
        (role, getattr(args, f"model_{role}"))
        for role in _ROLES
        if getattr(args, f"model_{role}") is not None
    )
    config = HpoConfig(
        task=args.task,
        model=args.model,
        train_fraction=args.train_fraction,
        rounds=args.rounds,
        epochs=args.epochs,
        patience=args.patience,
        consult_turns=args.consult_turns,
        seed=args.seed,
        advisor=args.advisor,
        search=args.search,
        anonymize=args.anonymize,
        names=tuple(n for n in (args.anonymize_names or "").split(",") if n.strip()),
        llm_base_url=args.llm_base_url,
        llm_model=args.llm_model,
        models=models,
        llm_timeout=args.llm_timeout,
        llm_retries=args.llm_retries,
    )
    problem = _options(args)
    if problem is not None:
        print(f"hagfish hpo: {problem}", file=sys.stderr)
        return 2
    try:
        config.check()
        if config.advisor == "llm":  # the endpoint settings fail here, before training
            from .advisors.llm import endpoints

            endpoints(config.llm_base_url, config.llm_model, dict(config.models))
    except (ValueError, ImportError) as err:
        hint = ""
        if config.advisor == "llm" and "HAGFISH_LLM" in str(err):
            hint = " (on the command line: --llm-base-url URL and --llm-model NAME)"
        print(f"hagfish hpo: {str(err).removeprefix('hpo: ')}{hint}", file=sys.stderr)
        return 2
    tensorboard = _tensorboard(args)
    if isinstance(tensorboard, int):
        return tensorboard
    writer, mirror = tensorboard or (None, None)

    def progress(r: int, summary: dict) -> None:
        if mirror is not None:  # a trial's rows are recorded when it ends
            mirror()
        if args.quiet:
            return
        if summary.get("status") == "failed":
            print(f"round {r}: failed ({summary.get('error', '')[:120]})", flush=True)
            return
        hp = summary.get("effective_hparams", {})
        shown = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items()
        )
        val, test = (_acc(summary.get(k)) for k in ("best_val_accuracy", "test_accuracy"))
        print(f"round {r}: val acc {val}, test acc {test} ({shown})", flush=True)

    try:
        result = run_hpo(config, args.out, progress=progress)
        if mirror is not None:
            mirror()
    except (LockedError, DamagedRecordError, NotADirectoryError, ValueError) as err:
        print(f"hagfish hpo: {err}", file=sys.stderr)
        return 2
    finally:
        if writer is not None:
            writer.close()
    best = result.best or {}
    acc = {k: best.get(k) for k in ("best_val_accuracy", "test_accuracy", "test_f1")}
    shown = {k: _acc(v) for k, v in acc.items()}
    print(
        f"best: {best.get('trial')} val acc {shown['best_val_accuracy']}, test acc "
        f"{shown['test_accuracy']}, test F1 {shown['test_f1']}; records in {result.out}"
    )
    _say_fallbacks(result.out)
    return 0


def _acc(value) -> str:
    """A recorded accuracy for print: ``n/a`` when there is none (a trial that
    diverged in its first epoch records ``None``).

    >>> _acc(0.91234), _acc(None)
    ('0.9123', 'n/a')
    """
    return "n/a" if value is None else f"{float(value):.4f}"


def _options(args: argparse.Namespace) -> str | None:
    """A problem with the options, named as on the command line, or ``None``."""
    for name in ("rounds", "epochs", "patience", "consult_turns"):
        value = getattr(args, name)
        if value < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {value}"
    if not 0.0 < args.train_fraction <= 1.0:
        return f"--train-fraction must be in (0, 1], got {args.train_fraction}"
    if args.train_fraction != 1.0 and args.task != "digits":
        return f"--train-fraction applies to --task digits, not --task {args.task}"
    return None


def _say_fallbacks(out) -> None:
    """Advisor calls that failed and fell back to offline advice, said on stderr (they are
    in events.jsonl too): a wrong URL must not pass for LLM advice."""
    from .records import read_run

    failed = [e for e in read_run(out)["events"] if e.get("kind") == "fallback"]
    if failed:
        first = failed[0]
        print(
            f"hagfish hpo: warning: {len(failed)} advisor call(s) failed and fell back to "
            f"offline advice (first, {first.get('role')}: {first.get('error')}); see "
            f"{Path(out) / 'events.jsonl'}",
            file=sys.stderr,
        )


def _tensorboard(args: argparse.Namespace):
    """With ``--tensorboard``: ``(writer, mirror)``, ``mirror()`` writing the run
    directory's new records as TensorBoard event files (its first call leaves alone
    what an earlier run mirrored), else ``None``; exit status 1 without the extra, 2
    for a DIR that is a file."""
    if not args.tensorboard:
        return None
    from .records import read_run
    from .tensorboard import TensorBoardWriter

    logdir = Path(args.out) / "tensorboard" if args.tensorboard is True else args.tensorboard
    try:
        writer = TensorBoardWriter(logdir)
    except (ImportError, NotADirectoryError) as err:
        print(f"hagfish hpo: {err}", file=sys.stderr)
        return 1 if isinstance(err, ImportError) else 2
    resume = True

    def mirror() -> None:
        nonlocal resume
        run = read_run(args.out)
        writer.sync(run["rows"], run["events"], run["meta"].get("hparams") or (), resume=resume)
        resume = False

    return writer, mirror


def add_parser(sub) -> None:
    """Add ``hpo`` to the ``hagfish`` parser."""
    hpo = sub.add_parser(
        "hpo",
        help="rounds of whole trials steered by advisors (offline by default)",
        description="Rounds of whole training runs: after each, the curves are diagnosed, "
        "remedies are looked up, two consultants and a supervisor propose the next "
        "configuration (optimizer, learning rate, batch size, weight decay, label "
        "smoothing) inside the space. Offline heuristics by default; --advisor llm asks "
        "an OpenAI-compatible endpoint. API keys come from the environment only: "
        "HAGFISH_LLM_API_KEY, or HAGFISH_LLM_API_KEY_<ROLE> per role (ROLE: CONSULTANT_A, "
        "CONSULTANT_B, SUPERVISOR, ANALYST, RESEARCHER).",
    )
    hpo.add_argument("--task", choices=("digits", "breast_cancer"), default="digits")
    hpo.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    hpo.add_argument(
        "--train-fraction", type=float, default=1.0,
        help="share of the digits train split kept (0.25: the harder variant; default 1)",
    )
    hpo.add_argument("--rounds", type=int, default=10, help="trials (default 10)")
    hpo.add_argument("--epochs", type=int, default=20, help="most epochs a trial (default 20)")
    hpo.add_argument(
        "--patience", type=int, default=8, help="early-stopping patience in epochs (default 8)"
    )
    hpo.add_argument(
        "--consult-turns", type=int, default=2, help="consultant turns a round (default 2)"
    )
    hpo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    hpo.add_argument("--out", default="runs/hpo", help="run directory (default runs/hpo)")
    hpo.add_argument("--advisor", choices=("heuristic", "llm"), default="heuristic")
    hpo.add_argument(
        "--search", choices=("offline", "none"), default="offline",
        help="research: the shipped knowledge base (default) or none",
    )
    hpo.add_argument(
        "--anonymize", action=argparse.BooleanOptionalAction, default=True,
        help="keep dataset and model names out of every agent-facing text (default on)",
    )
    hpo.add_argument(
        "--anonymize-names", metavar="NAMES", default=None,
        help="more names to keep out, comma separated",
    )
    hpo.add_argument(
        "--llm-base-url", metavar="URL", default=None,
        help="OpenAI-compatible endpoint (default $HAGFISH_LLM_BASE_URL)",
    )
    hpo.add_argument(
        "--llm-model", metavar="ID", default=None,
        help="model id of every role (default $HAGFISH_LLM_MODEL)",
    )
    for role in _ROLES:
        hpo.add_argument(
            f"--model-{role.replace('_', '-')}", dest=f"model_{role}", metavar="ID",
            default=None, help=f"model id of the {role.replace('_', ' ')}",
        )
    hpo.add_argument("--llm-timeout", type=float, default=60.0, help="seconds a request")
    hpo.add_argument("--llm-retries", type=int, default=3, help="retries on 429/5xx/timeouts")
    hpo.add_argument("--quiet", action="store_true", help="print only the result")
    hpo.add_argument(
        "--tensorboard", metavar="DIR", nargs="?", const=True, default=None,
        help="also write TensorBoard event files, each trial as it ends, into DIR "
        "(default OUT/tensorboard); needs pip install 'hagfish-jax[tensorboard]'",
    )
    hpo.set_defaults(func=_hpo)
