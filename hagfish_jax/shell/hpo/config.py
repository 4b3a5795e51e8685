"""What ``hagfish hpo`` runs: :class:`HpoConfig`, the built-in task family (a task
per batch size, on reference 002's space) and the names kept from agents."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.dimensions import Choice
from ...core.space import Space
from ..advisors.llm_client import _safe_url
from .executor import batch_choices

__all__ = ["HpoConfig", "HpoResult", "task_family"]

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
        if out.get("llm_base_url"):  # a user:password@ part is a secret, as a key is
            out["llm_base_url"] = _safe_url(out["llm_base_url"])
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
