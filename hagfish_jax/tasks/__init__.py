"""Built-in tasks, each a :class:`hagfish_jax.Task`, and the registry that names them.

* :mod:`.classification`: flax MLP/CNN on any small classification split;
* :mod:`.digits`, :mod:`.breast_cancer`: scikit-learn's bundled data sets on top of it
  (``pip install 'hagfish-jax[tasks]'``);
* :mod:`.cartpole`: PPO agents on gymnasium's functional CartPole;
* :mod:`.text`: an offline text corpus (standard-library docstrings by module family).

:data:`REGISTRY` is the one place a built-in task is added: ``hagfish demo --task``,
its defaults, the run directory and the printed report all read it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["REGISTRY", "TaskEntry", "make"]


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    """How ``hagfish demo`` builds and runs a built-in task.

    Attributes:
      module: the module under ``hagfish_jax.tasks`` whose ``make_task`` builds it, or
        any importable module path with a dot (``"mypackage.mytask"``).
      description: one line for ``--help``.
      options: the ``make_task`` options the command line may pass (``model``,
        ``hidden``, ``steps_per_window``, ``batch_size``, ``seed``).
      models: accepted ``--model`` values.
      tuners: accepted ``--tuner`` values.
      population: the default population size.
      one_cpu: run pinned to one core when the installed jax has the XLA CPU stall
        (jax 0.10; hagfish requires ``jax<0.10``), which hit the vmapped PPO program on
        few-core machines; see the README.
    """

    module: str
    description: str
    options: tuple[str, ...] = ("seed",)
    models: tuple[str, ...] = ("mlp",)
    tuners: tuple[str, ...] = ("pbt", "guard")
    population: int = 16
    one_cpu: bool = False


_CLASSIFIER = ("seed", "model", "hidden", "steps_per_window", "batch_size")

#: The built-in tasks by name.
REGISTRY: dict[str, TaskEntry] = {
    "digits": TaskEntry(
        "digits",
        "MLPs (or --model cnn) on scikit-learn's 8x8 digits",
        _CLASSIFIER,
        models=("mlp", "cnn"),
    ),
    "breast_cancer": TaskEntry(
        "breast_cancer", "MLPs on scikit-learn's breast cancer data", _CLASSIFIER
    ),
    "cartpole": TaskEntry(
        "cartpole",
        "PPO agents on gymnasium's functional CartPole",
        population=8,
        one_cpu=True,
    ),
}


def make(name: str, **options: Any) -> Any:
    """Build the built-in task ``name``; options it does not take are refused.

    >>> make("digits", hidden=(16,)).name
    'digits'
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; accepted: {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ValueError(f"task {name!r} takes {list(entry.options)}, not {unknown}")
    path = entry.module if "." in entry.module else f"{__name__}.{entry.module}"
    module = importlib.import_module(path)
    build: Callable[..., Any] = module.make_task
    return build(**{k: v for k, v in options.items() if v is not None})


def __getattr__(name: str) -> Any:  # the task modules load when first used
    if name in ("breast_cancer", "cartpole", "classification", "digits", "nnx_task", "text"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> Sequence[str]:
    return sorted(
        [*__all__, "breast_cancer", "cartpole", "classification", "digits", "nnx_task", "text"]
    )
