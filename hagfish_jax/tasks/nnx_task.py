"""flax NNX models as tasks: a module factory, an injected optax transform, a loss and
data become a :class:`hagfish_jax.Task`.

An ``nnx.Module`` is a mutable Python object; the tuned program wants a state it can
vmap over a population, keep as a snapshot, restore with ``jnp.where`` and copy
member to member with a gather. :func:`make_task` bridges the two with
``nnx.split``/``nnx.merge``: the module's structure (its ``GraphDef``) is built once
and closed over, and the state is a :class:`NNXState` of plain arrays, the module's
variables in three groups beside an ordinary optax state:

* ``params``: the trained variables (``wrt``, default ``nnx.Param``);
* ``rest``: the other variables the model keeps (batch statistics, counters);
* ``rngs``: the model's own random streams (``nnx.Rngs`` held by ``nnx.Dropout``).

Each training step merges a module from them, runs your loss on it, takes the
gradient with respect to ``params``, applies the optax update and splits the module
again, so whatever the forward pass changed (a batch statistic, an RNG counter) is
kept. The optax state is the transform's own, not wrapped in NNX variables, so
:func:`hagfish_jax.get_hparams` and :func:`hagfish_jax.set_hparams` read and write its
injected hyperparameters as for any other task, inside jit and without a retrace.

A rollback or a population copy brings back ``params``, ``rest``, the optimizer and
the extra hyperparameters; the step count and ``rngs`` stay the member's own (the
task's clock: restoring them would replay the same dropout masks).
``NNXTask.model(state)`` merges a state (``carry.best.state``) back into a module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ..core._checks import integer
from ..core.hparams import ExtraHParams, extra_hparams, get_hparams, set_hparams
from ..core.space import Space
from ..core.task import Task, restore_only

__all__ = ["NNXState", "NNXTask", "make_task"]


class NNXState(flax.struct.PyTreeNode):
    """A model's variables and its optimizer, as plain arrays.

    Attributes:
      params: the trained variables (``nnx.State`` of arrays).
      rest: the module's other variables, restored on rollback with ``params``.
      rngs: the module's random streams; never restored.
      opt_state: the optax state of the task's transform over ``params``.
      extra: :class:`hagfish_jax.ExtraHParams` with the non-optimizer hyperparameters.
      step: optimizer steps taken, int32.
    """

    params: Any
    rest: Any
    rngs: Any
    opt_state: Any
    extra: ExtraHParams
    step: jax.Array


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class NNXTask(Task):
    """A :class:`hagfish_jax.Task` over an NNX module.

    Attributes:
      graphdef: the module's structure (``nnx.split``'s first result).
      model: ``state -> nnx.Module``, the module a :class:`NNXState` holds.
      steps_per_window: optimizer steps in one window.
      batch_size: the minibatch size.
    """

    graphdef: Any
    model: Callable[[NNXState], nnx.Module]
    steps_per_window: int
    batch_size: int


def _split(module: nnx.Module, wrt: Any) -> tuple[Any, Any, Any, Any]:
    graphdef, params, rngs, rest = nnx.split(module, wrt, nnx.RngState, ...)
    return graphdef, nnx.pure(params), nnx.pure(rest), nnx.pure(rngs)


def _metrics(what: str, out: Any) -> dict:
    if not isinstance(out, Mapping) or "score" not in out:
        keys = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ValueError(f"nnx make_task: {what} must return a dict with 'score', got {keys}")
    return dict(out)


def make_task(
    model: Callable[[nnx.Rngs], nnx.Module],
    tx: optax.GradientTransformation,
    loss: Callable[[nnx.Module, Any, Mapping[str, jax.Array]], jax.Array],
    data: Any,
    evaluate: Callable[[nnx.Module], Mapping[str, jax.Array]],
    *,
    space: Space,
    default_hparams: Mapping[str, float],
    extra: Sequence[str] = (),
    batch_size: int = 64,
    steps_per_window: int | None = None,
    wrt: Any = nnx.Param,
    diverge_above: float | None = None,
    test: Callable[[nnx.Module], Mapping[str, jax.Array]] | None = None,
    name: str = "nnx",
    score_name: str = "score",
    target: float | None = None,
) -> NNXTask:
    """A task that trains the NNX module ``model(rngs)`` with ``tx`` on ``loss``.

    Args:
      model: ``nnx.Rngs -> nnx.Module``, called with ``nnx.Rngs(key)`` for each fresh
        model (once per population member, under ``vmap``).
      tx: an optax transform whose tuned values are injected
        (``optax.inject_hyperparams(...)``, ideally with
        ``hyperparam_dtype=jnp.float32``).
      loss: ``(module, batch, hparams) -> scalar`` on one minibatch, with the module in
        training mode; ``hparams`` holds the ``extra`` hyperparameters (``{}`` if none).
      data: the training set: an array or a pytree of arrays (``(x, y)``, a dict)
        sharing a leading example axis; minibatches are drawn from it in a random
        order, epoch by epoch.
      evaluate: ``module -> {"score": ..., ...}`` (higher is better, on validation
        data), called with the module in evaluation mode (``module.eval()``).
      space: the tuned hyperparameters.
      default_hparams: a starting value for every name ``tx`` injects that is tuned,
        and for each ``extra`` name.
      extra: names in ``default_hparams`` that no optimizer holds (label smoothing, a
        loss weight); they are kept beside the optimizer and passed to ``loss``.
      batch_size: minibatch size; the last partial batch of an epoch is dropped.
      steps_per_window: optimizer steps per window; default one epoch.
      wrt: the variables that are trained (an ``nnx`` filter).
      diverge_above: a window whose mean loss is above this has diverged (scored NaN,
        rolled back); a non-finite loss always has.
      test: optional ``module -> {"score": ...}`` on held-out data.
      name, score_name, target: as :class:`hagfish_jax.Task`.

    Returns:
      An :class:`NNXTask` whose state is an :class:`NNXState`.

    Raises:
      TypeError: ``model`` does not build an ``nnx.Module``, or a function is not
        callable.
      ValueError: ``tx`` injects no hyperparameters; a ``default_hparams`` name that
        neither ``tx`` nor ``extra`` holds; an ``extra`` name that ``tx`` holds too or
        that has no default; ``data`` arrays of different lengths; a batch size or
        step count out of range; a module without ``wrt`` variables. ``evaluate`` or
        ``test`` that returns no ``"score"`` raises when first traced.

    >>> import jax, jax.numpy as jnp, optax, hagfish_jax as hj
    >>> from flax import nnx
    >>> from hagfish_jax.tasks import nnx_task
    >>> x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.array([1.0, -1.0, 2.0])
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> task = nnx_task.make_task(
    ...     lambda rngs: nnx.Linear(3, 1, rngs=rngs), tx,
    ...     lambda m, b, hp: jnp.mean((m(b[0])[:, 0] - b[1]) ** 2), (x, y),
    ...     lambda m: {"score": -jnp.mean((m(x)[:, 0] - y) ** 2)},
    ...     space=hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0)),
    ...     default_hparams={"learning_rate": 0.1}, batch_size=16, steps_per_window=20)
    >>> state = task.init(jax.random.key(1), {})
    >>> before = task.evaluate(state)["score"]
    >>> state, metrics = jax.jit(task.train_window)(state, jax.random.key(2))
    >>> bool(task.evaluate(state)["score"] > 0.1 * before), type(task.model(state)).__name__
    (True, 'Linear')
    """
    for what, fn in (("model", model), ("loss", loss), ("evaluate", evaluate), ("test", test)):
        if fn is not None and not callable(fn):
            raise TypeError(f"nnx make_task: {what} must be callable, got {fn!r}")
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"nnx make_task: tx must be an optax transform, got {tx!r}")
    extra = tuple(extra)
    defaults = {k: float(v) for k, v in default_hparams.items()}
    missing = sorted(set(extra) - set(defaults))
    if missing:
        raise ValueError(f"nnx make_task: extra names {missing} have no default_hparams value")

    # -- the data ------------------------------------------------------------------
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("nnx make_task: data holds no arrays")
    data = jax.tree.map(jnp.asarray, data)
    lengths = {int(jnp.shape(a)[0]) if jnp.ndim(a) else 0 for a in jax.tree.leaves(data)}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"nnx make_task: data arrays must share a leading example axis, got lengths "
            f"{sorted(lengths)}"
        )
    n = lengths.pop()
    batch_size = integer("nnx make_task: batch_size", batch_size, 1)
    if batch_size > n:
        raise ValueError(f"nnx make_task: batch_size must be in [1, {n}], got {batch_size}")
    per_epoch = n // batch_size
    steps = per_epoch if steps_per_window is None else steps_per_window
    steps = integer("nnx make_task: steps_per_window", steps, 1)
    epochs = -(-steps // per_epoch)

    # -- the module's structure and the optimizer's names, without computing anything --
    abstract = nnx.eval_shape(lambda: model(nnx.Rngs(0)))
    if not isinstance(abstract, nnx.Module):
        raise TypeError(
            f"nnx make_task: model(rngs) must return an nnx.Module, got {type(abstract).__name__}"
        )
    graphdef, params0, _, _ = _split(abstract, wrt)
    if not jax.tree.leaves(params0):
        raise ValueError(f"nnx make_task: the module has no {wrt!r} variables to train")
    held = set(get_hparams(jax.eval_shape(tx.init, params0)))
    if not held:
        raise ValueError(
            "nnx make_task: tx injects no hyperparameters; build it with "
            "optax.inject_hyperparams(...)(...)"
        )
    both = sorted(held & set(extra))
    if both:
        raise ValueError(f"nnx make_task: extra names {both} are held by tx already")
    unknown = sorted(set(defaults) - held - set(extra))
    if unknown:
        raise ValueError(
            f"nnx make_task: default_hparams names {unknown} are held neither by tx "
            f"({sorted(held)}) nor listed in extra"
        )

    def merged(params, rest, rngs) -> nnx.Module:
        return nnx.merge(graphdef, params, rngs, rest)

    def init(key: jax.Array, hparams: Mapping[str, Any]) -> NNXState:
        _, params, rest, rngs = _split(model(nnx.Rngs(key)), wrt)
        state = NNXState(
            params=params,
            rest=rest,
            rngs=rngs,
            opt_state=tx.init(params),
            extra=extra_hparams(**{k: defaults[k] for k in extra}),
            step=jnp.zeros((), jnp.int32),
        )
        return set_hparams(state, {**defaults, **hparams})

    def train_window(state: NNXState, key: jax.Array) -> tuple[NNXState, dict]:
        # each epoch's order: the indices sorted by random 32-bit keys (one draw, one sort)
        order = jnp.argsort(jax.random.bits(key, (epochs, n), jnp.uint32), axis=1)
        batches = order[:, : per_epoch * batch_size].reshape(-1, batch_size)[:steps]
        hp = state.extra.hyperparams

        def step(s: NNXState, idx: jax.Array) -> tuple[NNXState, jax.Array]:
            batch = jax.tree.map(lambda a: a[idx], data)

            def objective(params):
                module = merged(params, s.rest, s.rngs)
                value = loss(module, batch, hp)
                if jnp.shape(value) != ():
                    raise ValueError(
                        f"nnx make_task: loss must return a scalar, got shape {jnp.shape(value)}"
                    )
                _, _, rest, rngs = _split(module, wrt)
                return value, (rest, rngs)

            grad = jax.value_and_grad(objective, has_aux=True)
            (value, (rest, rngs)), grads = grad(s.params)
            updates, opt_state = tx.update(grads, s.opt_state, s.params)
            new = s.replace(
                params=optax.apply_updates(s.params, updates),
                rest=rest,
                rngs=rngs,
                opt_state=opt_state,
                step=s.step + 1,
            )
            return new, value

        state, losses = jax.lax.scan(step, state, batches)
        mean = jnp.mean(losses)
        diverged = ~jnp.isfinite(mean)
        if diverge_above is not None:
            diverged = diverged | (mean > diverge_above)
        return state, {"loss": mean, "diverged": diverged}

    def model_of(state: NNXState) -> nnx.Module:
        return merged(state.params, state.rest, state.rngs)

    def in_eval_mode(state: NNXState) -> nnx.Module:
        module = model_of(state)
        module.eval()
        return module

    def evaluate_state(state: NNXState) -> dict:
        return _metrics("evaluate", evaluate(in_eval_mode(state)))

    def test_state(state: NNXState) -> dict:
        return _metrics("test", test(in_eval_mode(state)))

    return NNXTask(
        init=init,
        train_window=train_window,
        evaluate=evaluate_state,
        space=space,
        default_hparams=defaults,
        name=name,
        test=None if test is None else test_state,
        restore=restore_only("params", "rest", "opt_state", "extra"),
        window_cost=float(steps * batch_size),
        cost_unit="examples",
        score_name=score_name,
        target=target,
        data=data,
        graphdef=graphdef,
        model=model_of,
        steps_per_window=steps,
        batch_size=batch_size,
    )
