"""A trained controller: its policy network, its specification, and files on disk.

A controller directory holds ``controller.json`` (the :class:`Spec`: the space it
moves, its step, the run length it was trained on, its network width),
``checkpoints/``, orbax checkpoints of the policy and of PPO's optimizer state with a
manifest (:class:`hagfish_jax.shell.loop.checkpoints.Checkpoints`: atomic writes, the
last two kept plus the best), and, for a meta-trained controller, ``training.json``
(how it was trained: :func:`hagfish_jax.control.meta_train`). Meta-training resumes
from the latest checkpoint, so a controller keeps learning from new runs.

Saving a controller replaces whatever controller the directory held (its checkpoints
and its training record go), so :func:`load` gives back the controller saved last.
Each checkpoint also records its spec, and :func:`load` refuses a ``controller.json``
that does not match the checkpoint it reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
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
TRAINING_FILE = "training.json"
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

    Raises:
      ValueError: a dimension of ``space`` is not an interval (a ``Choice``): a
        controller moves each dimension up or down.
    """

    space: Space
    start: dict
    step: float
    horizon: int
    hidden: int = 64
    cost_weight: float = 0.01
    window_steps: int | None = None

    def __post_init__(self):
        space_to_json(self.space)  # refuses what could not be saved, before any training

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
      training: how it was meta-trained (``training.json``: the task, the settings,
        which families were held out), or ``None`` when that is unknown.
    """

    params: Any
    spec: Spec
    iterations: int = 0
    training: dict | None = None

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

    def save(
        self,
        directory: str | os.PathLike,
        opt_state: Any = None,
        key=None,
        *,
        replace: bool = True,
    ) -> Path:
        """Write the controller (and, for resuming, PPO's optimizer state and key).

        Args:
          directory: the controller directory (created if missing).
          opt_state, key: PPO's optimizer state and key, to resume meta-training.
          replace: remove every checkpoint the directory held before, and its
            ``training.json`` unless this controller carries its own record, so that
            :func:`load` gives back this controller. ``False`` keeps the earlier
            checkpoints as fallbacks: for a meta-training that continues the
            controller saved there (:func:`hagfish_jax.control.meta_train`).

        Raises:
          ValueError: with ``replace=False``, the directory holds another spec or a
            checkpoint with more iterations than this controller.
        """
        from ..shell._files import write_atomic
        from ..shell.loop.checkpoints import Checkpoints

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec_json = _plain_json(self.spec.to_json())
        ckpt = Checkpoints(directory / "checkpoints")  # holds the directory's lock
        try:
            earlier = []
            if replace:  # the new checkpoint first, alone in the manifest; the old go last
                earlier = list(ckpt.directory.glob("window_*"))
                ckpt.entries = []
            else:
                _check_continues(directory, spec_json, ckpt, self.iterations)
            tree = {"params": self.params}
            if opt_state is not None:
                tree["opt_state"] = opt_state
                tree["key"] = key
            ckpt.save(self.iterations, tree, resumable=opt_state is not None, spec=spec_json)
            # a kill before this line leaves the old controller.json beside the new
            # checkpoint, which records its own spec: load refuses the pair, never
            # reads one controller's weights under the other's spec
            write_atomic(directory / SPEC_FILE, json.dumps(spec_json, indent=2))
            if self.training is not None:
                write_atomic(directory / TRAINING_FILE, json.dumps(self.training, indent=1))
            elif replace:
                (directory / TRAINING_FILE).unlink(missing_ok=True)
            kept = f"window_{int(self.iterations):08d}"
            for old in earlier:
                if old.name != kept:
                    shutil.rmtree(old, ignore_errors=True)
        finally:
            ckpt.close()
        return directory


def _plain_json(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples as lists, and so on)."""
    return json.loads(json.dumps(data))


def _check_continues(directory: Path, spec_json: dict, ckpt, iterations: int) -> None:
    """Refuse to add a checkpoint that would not continue the controller saved there."""
    spec_path = directory / SPEC_FILE
    if spec_path.is_file() and json.loads(spec_path.read_text()) != spec_json:
        raise ValueError(
            f"Controller.save: {directory} holds a controller for another setting; "
            "save with replace=True or to a new directory"
        )
    later = [e["window"] for e in ckpt.entries if e["window"] > iterations]
    if later:
        raise ValueError(
            f"Controller.save: {directory} holds a checkpoint of {max(later)} iterations, "
            f"more than this controller's {iterations}; save with replace=True or to a "
            "new directory"
        )


def fresh_params(spec: Spec, key) -> Any:
    net = ActorCritic(3 * len(spec.space), spec.hidden)
    return net.init(key, jnp.zeros((spec.obs_dim,), jnp.float32))


def load(directory: str | os.PathLike, like_state: Any = None) -> Controller:
    """The controller saved in ``directory`` (its latest checkpoint).

    Raises:
      FileNotFoundError: no ``controller.json`` or no readable checkpoint there.
      ValueError: ``controller.json`` does not match the spec the checkpoint was
        saved with.
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
    spec_json = json.loads(spec_path.read_text())
    spec = Spec.from_json(spec_json)
    params = fresh_params(spec, jax.random.key(0))
    like = {"params": params}
    ckpt = Checkpoints(directory / "checkpoints")
    try:
        entry = ckpt.latest
        _check_spec(spec_path, spec_json, entry)  # before a restore of the wrong shapes
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
    _check_spec(spec_path, spec_json, entry)
    training_path = directory / TRAINING_FILE
    training = json.loads(training_path.read_text()) if training_path.is_file() else None
    controller = Controller(tree["params"], spec, int(entry["window"]), training)
    return controller, (tree if "opt_state" in tree else None)


def _check_spec(spec_path: Path, spec_json: dict, entry: dict | None) -> None:
    """Refuse a checkpoint saved under another spec than ``controller.json``'s
    (checkpoints written before specs were recorded carry none)."""
    saved = None if entry is None else entry.get("spec")
    if saved is not None and saved != spec_json:
        raise ValueError(
            f"controller: {spec_path} does not match the spec its checkpoint "
            f"{entry['name']} was saved with; save the controller again"
        )
