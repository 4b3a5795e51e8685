"""A trained controller: its policy network, its specification, and files on disk.

A controller directory holds ``controller.json`` (the :class:`Spec`: the space it
moves, its step, the run length it was trained on, its network width) and
``checkpoints/``, orbax checkpoints of the policy and of PPO's optimizer state with a
manifest (:class:`hagfish_jax.shell.loop.checkpoints.Checkpoints`: atomic writes, the
last two kept plus the best). Meta-training resumes from the latest checkpoint, so a
controller keeps learning from new runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ..core.dimensions import IntUniform, LogUniform, Uniform
from ..core.space import Space
from ..rl.ppo import ActorCritic
from . import features as F

__all__ = ["Controller", "Spec", "load", "space_from_json", "space_to_json"]

SPEC_FILE = "controller.json"
_DIMS = {"Uniform": Uniform, "LogUniform": LogUniform, "IntUniform": IntUniform}


def space_to_json(space: Space) -> dict:
    """A JSON-able description of an interval space."""
    out = {}
    for name, dim in space.dims.items():
        kind = type(dim).__name__
        if kind not in _DIMS:
            raise ValueError(f"a controller space takes intervals only; {name} is a {kind}")
        out[name] = {"type": kind, "low": dim.low, "high": dim.high, "dynamic": dim.dynamic}
    return out


def space_from_json(data: dict) -> Space:
    return Space(
        **{
            n: _DIMS[d["type"]](d["low"], d["high"], dynamic=bool(d["dynamic"]))
            for n, d in data.items()
        }
    )


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a controller was trained on and how it acts.

    Attributes:
      space: the dimensions it moves (the observation's unit cube is this space's).
      start: the starting values of meta-training (for dimensions a user's space lacks).
      step: the move per action in the unit cube.
      horizon: windows in a meta-training episode (used when a run's length is unknown).
      hidden: the width of the policy network.
      cost_weight: the reward's compute weight it was trained with.
      window_steps: optimizer steps in a meta-training window (``None``: unknown);
        ``hagfish controller eval`` uses it as its default.
    """

    space: Space
    start: dict
    step: float
    horizon: int
    hidden: int = 64
    cost_weight: float = 0.01
    window_steps: int | None = None

    @property
    def obs_dim(self) -> int:
        return len(self.space) + F.NUM_FEATURES

    def to_json(self) -> dict:
        return {
            "space": space_to_json(self.space),
            "start": {k: float(v) for k, v in self.start.items()},
            "step": self.step,
            "horizon": self.horizon,
            "hidden": self.hidden,
            "cost_weight": self.cost_weight,
            "window_steps": self.window_steps,
            "features": F.NUM_FEATURES,
        }

    @classmethod
    def from_json(cls, data: dict) -> Spec:
        if data.get("features") != F.NUM_FEATURES:
            raise ValueError(
                f"controller: saved with {data.get('features')} features, this version "
                f"reads {F.NUM_FEATURES}; train it again"
            )
        return cls(
            space=space_from_json(data["space"]),
            start=dict(data["start"]),
            step=float(data["step"]),
            horizon=int(data["horizon"]),
            hidden=int(data["hidden"]),
            cost_weight=float(data["cost_weight"]),
            window_steps=data.get("window_steps"),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Controller:
    """A policy over hyperparameter moves. ``act`` is pure and jittable.

    Attributes:
      params: the actor-critic's parameters (:class:`hagfish_jax.rl.ppo.ActorCritic`).
      spec: the :class:`Spec`.
      iterations: meta-training iterations behind it.
    """

    params: Any
    spec: Spec
    iterations: int = 0

    @property
    def network(self) -> ActorCritic:
        return ActorCritic(3 * len(self.spec.space), self.spec.hidden)

    def logits(self, obs: jax.Array) -> jax.Array:
        logits, _ = self.network.apply(self.params, obs)
        return logits.reshape(logits.shape[:-1] + (len(self.spec.space), 3))

    def act(self, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """One action per dimension (0 down, 1 keep, 2 up): the most likely, or sampled
        with ``key``."""
        logits = self.logits(obs)
        return jnp.argmax(logits, -1) if key is None else jax.random.categorical(key, logits)

    def save(self, directory: str | os.PathLike, opt_state: Any = None, key=None) -> Path:
        """Write the controller (and, for resuming, PPO's optimizer state and key)."""
        from ..shell._files import write_atomic
        from ..shell.loop.checkpoints import Checkpoints

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / SPEC_FILE, json.dumps(self.spec.to_json(), indent=2))
        ckpt = Checkpoints(directory / "checkpoints")
        try:
            tree = {"params": self.params}
            if opt_state is not None:
                tree["opt_state"] = opt_state
                tree["key"] = key
            ckpt.save(self.iterations, tree, resumable=opt_state is not None)
        finally:
            ckpt.close()
        return directory


def fresh_params(spec: Spec, key) -> Any:
    net = ActorCritic(3 * len(spec.space), spec.hidden)
    return net.init(key, jnp.zeros((spec.obs_dim,), jnp.float32))


def load(directory: str | os.PathLike, like_state: Any = None) -> Controller:
    """The controller saved in ``directory`` (its latest checkpoint).

    Raises:
      FileNotFoundError: no ``controller.json`` or no readable checkpoint there.
    """
    controller, _ = load_state(directory, like_state)
    return controller


def load_state(directory: str | os.PathLike, like_state: Any = None):
    """``(controller, tree)``: ``tree`` holds ``opt_state`` and ``key`` when the save
    was resumable and ``like_state`` gives their structure, else ``None``."""
    from ..shell.loop.checkpoints import Checkpoints

    directory = Path(directory)
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(f"no controller at {directory} (missing {SPEC_FILE})")
    spec = Spec.from_json(json.loads(spec_path.read_text()))
    params = fresh_params(spec, jax.random.key(0))
    like = {"params": params}
    ckpt = Checkpoints(directory / "checkpoints")
    try:
        entry = ckpt.latest
        if entry is not None and entry.get("resumable"):
            if like_state is None:  # the structure PPO's optimizer state has
                from ..rl.ppo import PPO

                like_state = {"opt_state": PPO().tx(1e-3).init(params), "key": jax.random.key(0)}
            like = {**like, **like_state}
        got = ckpt.restore(like, which="latest")
    finally:
        ckpt.close()
    if got is None:
        raise FileNotFoundError(f"no readable controller checkpoint in {directory}")
    tree, entry = got  # fresh (uncommitted) arrays: a resume compiles nothing
    controller = Controller(tree["params"], spec, int(entry["window"]))
    return controller, (tree if "opt_state" in tree else None)
