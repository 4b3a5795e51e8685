"""Fewer leaves per call: pack a pytree's small leaves for host-driven loops.

A jitted call pays a fixed host cost for every leaf it takes and returns (about 1.5 µs
each on a CPU, in and out), whatever the leaf's size. A tuned run's carry has many
small leaves: the tuner's counters and scores, injected hyperparameters, the best
member's score and window. Driven window by window from Python, those leaves cost
more than the tuning itself. A :class:`Packer` stacks the small leaves of one shape
and dtype into a single array and leaves the large ones as they are, so a call moves
a handful of arrays instead of dozens. Inside jit, unpacking is slicing and packing
is stacking: a few hundred bytes of copies, nothing on the large leaves.

The packed form is a :class:`Packed` pytree, opaque to the caller: pack once, keep it
between calls, unpack when the carry itself is needed (a checkpoint, the result).

>>> import jax, jax.numpy as jnp
>>> tree = {"w": jnp.ones((256,)), "lr": jnp.float32(0.1), "b1": jnp.float32(0.9),
...         "step": jnp.int32(0)}
>>> packer = Packer(tree)
>>> packed = packer.pack(tree)
>>> len(jax.tree.leaves(packed)) < len(jax.tree.leaves(tree))
True
>>> step = packer.jit(lambda t: {**t, "step": t["step"] + 1})
>>> int(packer.unpack(step(packed))["step"])
1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Packed", "Packer"]


class Packed(NamedTuple):
    """A pytree in packed form: its large leaves as they are, its small leaves stacked
    by (shape, dtype) group. Only the :class:`Packer` that made it can read it."""

    large: tuple
    small: tuple


class Packer:
    """Packs and unpacks pytrees of one structure (that of ``example``).

    Args:
      example: a pytree of arrays with the structure, shapes and dtypes to pack.
      max_size: leaves with at most this many elements are packed (default 64).

    A leaf is packed when it is small, not a PRNG key, and not sharded over more
    than one device (stacking would gather it); everything else passes through.
    """

    def __init__(self, example: Any, max_size: int = 64):
        leaves, self.treedef = jax.tree.flatten(example)
        self.count = len(leaves)
        groups: dict[tuple, list[int]] = {}
        self._large: list[int] = []
        for i, leaf in enumerate(leaves):
            if _packable(leaf, max_size):
                key = (tuple(jnp.shape(leaf)), jnp.result_type(leaf).name)
                groups.setdefault(key, []).append(i)
            else:
                self._large.append(i)
        self._groups = [(key, idx) for key, idx in groups.items() if len(idx) > 1]
        self._large += [i for _, idx in groups.items() if len(idx) == 1 for i in idx]
        self._large.sort()
        self.pack = jax.jit(self.pack_traced)
        self.unpack = jax.jit(self.unpack_traced)

    @property
    def leaves(self) -> int:
        """How many leaves a call takes in packed form."""
        return len(self._large) + len(self._groups)

    def pack_traced(self, tree: Any) -> Packed:
        """:meth:`pack` without its own jit (for use inside a traced function)."""
        leaves, treedef = jax.tree.flatten(tree)
        if treedef != self.treedef:
            raise ValueError(f"Packer: expected a tree of structure {self.treedef}, got {treedef}")
        for (shape, dtype), idx in self._groups:  # a leaf that changed would be cast
            for i in idx:
                leaf = leaves[i]
                weak = getattr(leaf, "weak_type", not hasattr(leaf, "dtype"))
                changed = tuple(jnp.shape(leaf)) != shape or (
                    not weak and jnp.result_type(leaf).name != dtype
                )
                if changed:
                    raise ValueError(
                        f"Packer: leaf {i} was {dtype}{list(shape)} and is now "
                        f"{jnp.result_type(leaf).name}{list(jnp.shape(leaf))}; a packed "
                        "leaf keeps its shape and dtype (as a scan's carry does)"
                    )
        large = tuple(leaves[i] for i in self._large)
        small = tuple(
            jnp.stack([jnp.asarray(leaves[i], dtype) for i in idx])
            for (_, dtype), idx in self._groups
        )
        return Packed(large, small)

    def unpack_traced(self, packed: Packed) -> Any:
        """:meth:`unpack` without its own jit (for use inside a traced function)."""
        leaves: list[Any] = [None] * self.count
        for i, leaf in zip(self._large, packed.large):
            leaves[i] = leaf
        for (_, idx), stacked in zip(self._groups, packed.small):
            for j, i in enumerate(idx):
                leaves[i] = stacked[j]
        return jax.tree.unflatten(self.treedef, leaves)

    def jit(self, fn: Callable, *, has_aux: bool = False, donate: bool = False) -> Callable:
        """``fn(tree, *args) -> tree`` jitted over the packed form:
        ``(packed, *args) -> packed``. With ``has_aux``, ``fn`` returns ``(tree, out)``
        and the call ``(packed, out)``; ``out`` (a window's row, say) comes back as it
        is. ``donate`` donates the packed input to the call."""

        def packed_fn(packed: Packed, *args):
            result = fn(self.unpack_traced(packed), *args)
            if has_aux:
                return self.pack_traced(result[0]), result[1]
            return self.pack_traced(result)

        return jax.jit(packed_fn, donate_argnums=0 if donate else ())


def _packable(leaf: Any, max_size: int) -> bool:
    if not hasattr(leaf, "dtype") or jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return False
    if int(np.prod(jnp.shape(leaf), dtype=np.int64)) > max_size:
        return False
    sharding = getattr(leaf, "sharding", None)
    return sharding is None or len(sharding.device_set) <= 1
