"""Read and write hyperparameters held inside optax states (and beside them).

``optax.inject_hyperparams`` keeps numeric hyperparameters as arrays in the
optimizer state, so a jitted step can take new values without recompiling. These
helpers find every such state anywhere in a pytree (plain, ``optax.chain``,
``optax.multi_transform``, nested injects, a user's train state) and read or
write its values as one flat ``dict``.

Names: a hyperparameter held by exactly one injected state is addressed by its
plain name (``"learning_rate"``). A name held by several states is reported once
per state with a path prefix (``"encoder/learning_rate"``, ``"0/learning_rate"``);
writing the plain name then sets every occurrence.

Non-optimizer hyperparameters (dropout, label smoothing, loss weights) live in an
:class:`ExtraHParams` node placed anywhere in the same state; they are read and
written through the same dict, and the user's step function reads them with
``state.extra.hyperparams["dropout_rate"]`` (or :func:`get_hparams`).

flax NNX: an ``nnx.Optimizer`` keeps its optax state with every array wrapped in an
``nnx`` variable, and ``nnx.split``/``nnx.state`` turn the injected state into nested
dicts of such variables. Both are found too: reads return the arrays, writes put each
new value in a variable of the same type, so the tree keeps its structure and
``nnx.merge``/``nnx.update`` take it back.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

__all__ = ["ExtraHParams", "extra_hparams", "get_hparams", "set_hparams"]


class ExtraHParams(NamedTuple):
    """Hyperparameters that no optimizer holds, kept in the state as arrays."""

    hyperparams: dict[str, jax.Array]


def extra_hparams(dtype=jnp.float32, **values: Any) -> ExtraHParams:
    """Build an :class:`ExtraHParams` node with strongly typed ``dtype`` arrays.

    >>> import hagfish_jax as hj
    >>> extra = hj.extra_hparams(dropout_rate=0.1, label_smoothing=0.0)
    >>> hj.get_hparams(extra)["dropout_rate"].dtype
    dtype('float32')
    """
    return ExtraHParams(
        {k: lax.convert_element_type(jnp.asarray(v), dtype) for k, v in values.items()}
    )


_INJECT_TYPES: tuple[type, ...] = tuple(
    t
    for t in (
        getattr(optax, "InjectStatefulHyperparamsState", None),
        getattr(optax, "InjectHyperparamsState", None),
    )
    if t is not None
)
_NODE_TYPES = _INJECT_TYPES + (ExtraHParams,)


def _variable_type() -> type | None:
    """flax NNX's variable class, once ``flax.nnx`` is loaded (before that no tree can
    hold one, and the core does not import it)."""
    module = sys.modules.get("flax.nnx.variablelib")
    return getattr(module, "Variable", None)


def _unwrap(value: Any) -> Any:
    """The array inside an NNX variable; anything else as it is."""
    var = _variable_type()
    return value.get_value() if var is not None and isinstance(value, var) else value


def _rewrap(old: Any, new: jax.Array) -> Any:
    """``new`` in a variable of ``old``'s type and metadata when ``old`` is one."""
    var = _variable_type()
    return old.replace(new) if var is not None and isinstance(old, var) else new


# An injected state as NNX graph state holds it (``nnx.split(optimizer)``): a dict of
# these fields (empty ones dropped) whose hyperparameters are NNX variables.
_INJECT_FIELDS = frozenset({"count", "hyperparams", "hyperparams_states", "inner_state"})


def _is_graph_node(x: Any) -> bool:
    if not (type(x) is dict and "hyperparams" in x and x.keys() <= _INJECT_FIELDS):
        return False
    hps, var = x["hyperparams"], _variable_type()
    return (
        var is not None
        and isinstance(hps, dict)
        and bool(hps)
        and all(isinstance(v, var) for v in hps.values())
    )


def _is_node(x: Any) -> bool:
    return isinstance(x, _NODE_TYPES) or _is_graph_node(x)


def _field(node: Any, name: str) -> Any:
    return node.get(name) if type(node) is dict else getattr(node, name, None)


def _with(node: Any, **fields: Any) -> Any:
    return {**node, **fields} if type(node) is dict else node._replace(**fields)


def _path_parts(path) -> list[str]:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey) and k.name not in _OPTAX_FIELDS:
            parts.append(k.name)  # a user's train-state field, e.g. "opt_state"
    return parts


# Field names inside optax states: they say nothing a user would recognise.
_OPTAX_FIELDS = frozenset({"inner_state", "inner_states", "hyperparams_states"})


def _scheduled(node) -> frozenset[str]:
    states = _field(node, "hyperparams_states") or {}
    return frozenset(states)


def _nodes(tree, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every hyperparameter node in ``tree`` as ``(path, node)``, in pre-order.

    Nested injects (an injected factory whose inner state holds another injected
    state) are found too: each node's ``inner_state`` is searched after the node.
    """
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_node)[0]:
        if _is_node(leaf):
            full = prefix + tuple(path)
            out.append((full, leaf))
            inner = _field(leaf, "inner_state")
            if inner is not None:
                out.extend(_nodes(inner, full))
    return out


def _index(tree) -> tuple[list, dict[str, list[tuple[int, str]]]]:
    """Find every hyperparameter node in ``tree`` and map names to (node, key)."""
    nodes = _nodes(tree)
    counts: dict[str, int] = {}
    for _, node in nodes:
        for name in _field(node, "hyperparams"):
            counts[name] = counts.get(name, 0) + 1
    names: dict[str, list[tuple[int, str]]] = {}
    for i, (path, node) in enumerate(nodes):
        prefix = "/".join(_path_parts(path)) or jax.tree_util.keystr(path)
        for name in _field(node, "hyperparams"):
            full = name if counts[name] == 1 else f"{prefix}/{name}"
            if full in names:  # two nodes with the same printable path
                full = f"{jax.tree_util.keystr(path)}/{name}"
            names.setdefault(full, []).append((i, name))
            if counts[name] > 1:
                # the plain name writes every occurrence
                names.setdefault(name, []).append((i, name))
    return nodes, names


def _rebuild(tree, new_hps: dict[int, dict], counter: list[int]):
    """``tree`` with node ``i`` (pre-order, as :func:`_nodes`) given the values ``new_hps[i]``."""
    flat, treedef = jax.tree_util.tree_flatten(tree, is_leaf=_is_node)
    leaves = []
    for leaf in flat:
        if _is_node(leaf):
            i = counter[0]
            counter[0] += 1
            if _variable_type() is not None:
                # NNX variables are mutable: the new tree gets its own, never the input's
                leaf = jax.tree_util.tree_map(lambda x: x, leaf)
            if i in new_hps:
                leaf = _with(leaf, hyperparams={**_field(leaf, "hyperparams"), **new_hps[i]})
            inner = _field(leaf, "inner_state")
            if inner is not None:
                leaf = _with(leaf, inner_state=_rebuild(inner, new_hps, counter))
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def get_hparams(tree: Any) -> dict[str, jax.Array]:
    """Every injected (and extra) hyperparameter found in ``tree``.

    Args:
      tree: an optax state or any pytree containing one or more.

    Returns:
      A flat dict name -> array (scalars, or ``(N,)`` for a vmapped population).
      Names shared by several states appear once per state with a path prefix.

    >>> import jax.numpy as jnp, optax, hagfish_jax as hj
    >>> tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4)
    >>> hp = hj.get_hparams(tx.init({"w": jnp.zeros(3)}))
    >>> round(float(hp["learning_rate"]), 6)
    0.001
    """
    nodes, names = _index(tree)
    out = {}
    for full, places in names.items():
        if len(places) == 1 or "/" in full:
            i, key = places[0]
            out[full] = _unwrap(_field(nodes[i][1], "hyperparams")[key])
    return out


def _check_value(name: str, value: Any, dtype) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    try:
        v = np.asarray(value, np.float64)
    except (TypeError, ValueError):  # pragma: no cover - odd inputs are caught later
        return
    # jnp.issubdtype, not np.issubdtype: numpy does not count bfloat16 as floating.
    if not jnp.issubdtype(dtype, jnp.floating):
        return
    if np.any(np.isnan(v)):
        raise ValueError(f"set_hparams: {name!r} must be a number, got NaN")
    limit = float(jnp.finfo(dtype).max)
    if np.any(np.isfinite(v) & (np.abs(v) > limit)):
        raise ValueError(
            f"set_hparams: {name!r} = {v.ravel()[0]:.6g} does not fit its stored dtype "
            f"{np.dtype(dtype).name} (at most {limit:.3g} in size)"
        )
    if np.dtype(dtype).itemsize >= 4:
        return
    cast = np.asarray(jnp.asarray(v).astype(dtype)).astype(np.float64)
    changed = np.abs(cast - v) > 1e-6 * np.maximum(np.abs(v), 1e-30)
    if np.any(changed):
        warnings.warn(
            f"hyperparameter {name!r} is stored as {np.dtype(dtype).name}: {v.ravel()[0]:.6g} "
            f"becomes {cast.ravel()[0]:.6g}; create the optimizer with "
            "optax.inject_hyperparams(..., hyperparam_dtype=jnp.float32)",
            stacklevel=3,
        )


def set_hparams(tree: Any, hp: Mapping[str, Any]) -> Any:
    """Return ``tree`` with the hyperparameters in ``hp`` replaced.

    Values are cast to the stored dtype (never weakly typed) and broadcast to the
    stored shape, so a jitted step that takes the new state does not retrace.

    Args:
      tree: an optax state or any pytree containing one or more.
      hp: name -> value; scalars broadcast over a population axis.

    Returns:
      A new tree with the same structure, shapes and dtypes.

    Raises:
      KeyError: a name that no injected state (or :class:`ExtraHParams`) holds;
        the message lists the names that exist.
      ValueError: a name driven by a schedule (it would be overwritten on the next
        update), a value whose shape does not broadcast to the stored one, or (for
        concrete values, outside jit) a NaN or a value the stored dtype cannot hold.

    >>> import jax.numpy as jnp, optax, hagfish_jax as hj
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> state = hj.set_hparams(tx.init({"w": jnp.zeros(3)}), {"learning_rate": 0.05})
    >>> round(float(hj.get_hparams(state)["learning_rate"]), 6)
    0.05
    """
    nodes, names = _index(tree)
    unknown = [k for k in hp if k not in names]
    if unknown:
        raise KeyError(
            f"set_hparams: no injected state holds {sorted(unknown)}; "
            f"available: {sorted(k for k in get_hparams(tree))}"
        )
    updates: dict[int, dict[str, Any]] = {}
    for full, value in hp.items():
        for i, key in names[full]:
            node = nodes[i][1]
            if key in _scheduled(node):
                raise ValueError(
                    f"set_hparams: {full!r} is driven by a schedule and would be overwritten "
                    "on the next update; inject it as a number to tune it"
                )
            updates.setdefault(i, {})[key] = value
    new_hps: dict[int, dict] = {}
    for i, new in updates.items():
        hps = _field(nodes[i][1], "hyperparams")
        new_hps[i] = {}
        for key, value in new.items():
            old = _unwrap(hps[key])
            _check_value(key, value, old.dtype)
            arr = lax.convert_element_type(jnp.asarray(value), old.dtype)
            try:
                arr = jnp.broadcast_to(arr, old.shape)
            except ValueError:
                raise ValueError(
                    f"set_hparams: {key!r} has shape {old.shape}; got a value of shape {arr.shape}"
                ) from None
            new_hps[i][key] = _rewrap(hps[key], arr)
    return _rebuild(tree, new_hps, [0])
