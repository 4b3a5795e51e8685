"""The Task protocol: one documented shape for anything that trains.

A task bundles pure functions with their search space. The tuned program
(:mod:`hagfish_jax.core.program`), ``hj.Loop``, ``hagfish demo``, the examples and the
benchmarks all take a task; the built-in ones (``hagfish_jax.tasks``) and yours have
the same shape:

* ``init(key, hparams) -> state``: a fresh model; ``hparams`` may name a subset of the
  space (the rest come from ``default_hparams``);
* ``train_window(state, key) -> (state, metrics)``: one window of training. A boolean
  ``metrics["diverged"]`` marks a window whose loss exploded; it is scored NaN, so it
  never becomes best and the guard rolls back;
* ``evaluate(state) -> metrics`` with ``"score"`` (higher is better; validation data)
  and optionally ``"train_score"`` and ``"val_loss"`` (the best member is the one with
  the best score, ties broken by the lower ``val_loss``, or by the lower
  ``"tie_break"`` when ``evaluate`` reports one: CartPole's is minus the smoothed
  return, so an agent that holds the 500 cap beats one that touched it once);
* ``space`` and ``default_hparams``.

Optional: ``test(state) -> metrics`` on held-out data, measured once at the end;
``predict(params, x)`` for ensembles; ``restore(current, snapshot)``, which parts of
the state a rollback may restore (and a population member copies from another, in a
PBT exploit); ``window_cost`` in your units; ``name``; ``data``.

Rollbacks and the task's own clock: a rollback should bring back the weights and the
optimizer state, never the task's clock, data cursor or environment state. Restoring
those replays the same windows (and the same bad stretch of data) again and again.
Only the task knows which part is which, so a task whose state carries a clock says
so with ``restore``; :func:`restore_only` builds one from field names. Without it the
whole state is restored. The built-in tasks declare theirs.

The same split applies when a population member copies another (a PBT exploit, a
spawn): it takes the model, and keeps its own clock, environments and episode
statistics. A copied reinforcement-learning agent that took its parent's episode
returns along would score its parent's recent episodes, not its own.

Functions are written for one member; the program vmaps them over a population. They
must be jittable when the program is jitted (the Loop also accepts plain Python
``train_window`` functions, see :class:`hagfish_jax.Loop`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .space import Space

__all__ = ["Task", "check_task", "restore_only"]

_REQUIRED = ("init", "train_window", "evaluate", "space", "default_hparams")


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Task:
    """A trainable thing: pure functions plus the space they are tuned over.

    A quadratic bowl whose learning rate is tuned, in a few lines:

    >>> import jax, jax.numpy as jnp, optax, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> def init(key, hparams):
    ...     w = jax.random.normal(key, (3,))
    ...     return hj.set_hparams({"w": w, "opt": tx.init(w)}, hparams)
    >>> def train_window(state, key):
    ...     g = jax.grad(lambda w: jnp.sum(w**2))(state["w"])
    ...     u, opt = tx.update(g, state["opt"], state["w"])
    ...     return {"w": state["w"] + u, "opt": opt}, {}
    >>> evaluate = lambda state: {"score": -jnp.sum(state["w"] ** 2)}
    >>> task = hj.Task(init=init, train_window=train_window, evaluate=evaluate,
    ...                space=space, default_hparams={"learning_rate": 0.1})
    >>> state = task.init(jax.random.key(0), {})
    >>> float(hj.get_hparams(state)["learning_rate"])
    0.10000000149011612

    Attributes:
      init: ``(key, hparams) -> state``.
      train_window: ``(state, key) -> (state, metrics)``.
      evaluate: ``state -> metrics`` with ``"score"``.
      space: the :class:`hagfish_jax.Space` of its tunable hyperparameters.
      default_hparams: starting values for every name ``init`` accepts.
      name: a short name for records and reports.
      test: optional ``state -> metrics`` with ``"score"`` on held-out data.
      predict: optional ``(params, x) -> outputs`` (logits) for ensembles.
      restore: optional ``(current, snapshot) -> state`` applied on rollback, and on a
        population copy (``snapshot`` is then the parent); default the whole
        snapshot. A task whose state carries its own clock, data cursor or
        environment keeps those from ``current``: ``restore_only("params",
        "opt_state")`` restores just those fields.
      window_cost: the cost of one window, in ``cost_unit`` (records, budgets).
      cost_unit: what a unit of cost is (``"batch size x epochs"``, ``"environment
        steps"``).
      score_name: what ``"score"`` measures (``"val_accuracy"``, ``"return"``, ...).
      target: a score that counts as solved (reports say when it was first reached).
      data: anything the task trains on, for callers that need it (optional).
    """

    init: Callable[..., Any]
    train_window: Callable[..., tuple[Any, dict]]
    evaluate: Callable[[Any], dict]
    space: Space
    default_hparams: Mapping[str, float]
    name: str = "task"
    test: Callable[[Any], dict] | None = None
    predict: Callable[..., Any] | None = None
    restore: Callable[[Any, Any], Any] | None = None
    window_cost: float = 1.0
    cost_unit: str = "windows"
    score_name: str = "score"
    target: float | None = None
    data: Any = None

    def __post_init__(self):
        check_task(self)

    def replace(self, **changes: Any) -> Task:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def restore_only(*fields: str) -> Callable[[Any, Any], Any]:
    """A ``Task.restore`` that takes ``fields`` from the snapshot and everything else
    (clock, data cursor, environment) from the current state.

    Works on dicts, NamedTuples, dataclasses and flax structs (anything with
    ``_replace``, ``replace`` or item access).

    >>> import jax.numpy as jnp
    >>> restore = restore_only("params")
    >>> now = {"params": jnp.zeros(2), "clock": jnp.int32(7)}
    >>> best = {"params": jnp.ones(2), "clock": jnp.int32(3)}
    >>> out = restore(now, best)
    >>> out["params"].tolist(), int(out["clock"])
    ([1.0, 1.0], 7)
    >>> from flax.core import FrozenDict
    >>> type(restore(FrozenDict(now), FrozenDict(best))).__name__
    'FrozenDict'
    """
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise ValueError(f"restore_only: give one or more field names, got {fields!r}")

    def restore(current: Any, snapshot: Any) -> Any:
        if isinstance(current, Mapping):
            missing = [f for f in fields if f not in current]
            if missing:
                raise KeyError(f"restore_only: the state has no field {missing}")
            merged = {**current, **{f: snapshot[f] for f in fields}}
            # the state's own mapping type (a FrozenDict, an OrderedDict): the program's
            # branches must give back the pytree they were given
            return merged if type(current) is dict else type(current)(merged)
        missing = [f for f in fields if not hasattr(current, f)]
        if missing:
            raise AttributeError(f"restore_only: the state has no field {missing}")
        picked = {f: getattr(snapshot, f) for f in fields}
        if hasattr(current, "_replace"):
            return current._replace(**picked)
        if hasattr(current, "replace"):
            return current.replace(**picked)
        return dataclasses.replace(current, **picked)

    restore.fields = fields  # type: ignore[attr-defined]
    return restore


def check_task(task: Any, where: str = "Task") -> Any:
    """``task`` if it has the protocol's attributes; else a ``TypeError`` naming what is
    missing or wrong. Any object with these attributes is a task (duck typing)."""
    missing = [a for a in _REQUIRED if not hasattr(task, a)]
    if missing:
        raise TypeError(
            f"{where}: a task needs {', '.join(_REQUIRED)}; {type(task).__name__} has no "
            f"{', '.join(missing)}"
        )
    for name in ("init", "train_window", "evaluate"):
        if not callable(getattr(task, name)):
            raise TypeError(f"{where}: {name} must be callable, got {getattr(task, name)!r}")
    if task.space is not None and not isinstance(task.space, Space):
        raise TypeError(f"{where}: space must be a hagfish_jax.Space, got {task.space!r}")
    if not isinstance(task.default_hparams, Mapping):
        raise TypeError(f"{where}: default_hparams must be a mapping, got {task.default_hparams!r}")
    if task.space is not None:
        unknown = sorted(set(task.space.names) - set(task.default_hparams))
        if unknown:
            raise ValueError(f"{where}: default_hparams has no value for {unknown}")
    return task
