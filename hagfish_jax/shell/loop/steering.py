"""What the Loop decides between compiled calls from host values: advice clamped to
the space, and the noise of a spawned variant from the score history."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from ...core._checks import integer
from ...core.dimensions import Choice
from ...core.hparams import get_hparams, set_hparams
from ...core.program import Carry
from ...core.space import Space
from ...core.task import Task, check_task
from .backoff import Phase
from .callbacks import overrides
from .control import Action, spawn_noise

__all__ = [
    "Steering",
    "as_task",
    "check_options",
    "clamp",
    "device_values",
    "floats",
    "noise_scale",
    "python_values",
]


def _no_init(key, hparams):
    raise TypeError("Loop: built from step/evaluate, so run() needs a state to start from")


def as_task(step, evaluate, task, space: Space | None) -> tuple[Any, Space | None, bool]:
    """The Loop's task: ``task`` (checked), or one made of ``step``/``evaluate`` that take
    the whole state as it is (``vectorized``). Returns ``(task, space, vectorized)``."""
    if task is not None:
        if step is not None or evaluate is not None:
            raise TypeError("Loop: give either task= or step and evaluate, not both")
        check_task(task, "Loop")
        return task, task.space if space is None else space, False
    if not callable(step) or not callable(evaluate):
        raise TypeError("Loop: step and evaluate must be callables (or give task=)")
    defaults = {} if space is None else {n: math.nan for n in space.names}
    task = Task(
        init=_no_init,
        train_window=step,
        evaluate=evaluate,
        space=space,
        default_hparams=defaults,
        name="loop",
    )
    return task, space, True


def check_options(save_every, target_patience, max_ensemble_size, advisor) -> None:
    """The Loop's options, checked before any work (clear errors naming the option)."""
    if save_every is not None:
        integer("Loop: save_every", save_every, 1)
    integer("Loop: target_patience", target_patience, 1)
    integer("Loop: max_ensemble_size", max_ensemble_size, 1)
    if advisor is not None and not callable(getattr(advisor, "advise", None)):
        raise TypeError("Loop: advisor must have an advise(context) method")


def clamp(hp: Mapping[str, Any], known: Mapping[str, Any], space: Space | None) -> dict[str, float]:
    """Proposed values that can be applied: names the state holds, finite numbers, dynamic
    dimensions of ``space`` clipped into it; everything else is dropped.

    >>> import hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
    >>> clamp({"learning_rate": 50.0, "unknown": 1.0, "b1": "x"}, {"learning_rate": 0.1}, space)
    {'learning_rate': 1.0}
    >>> clamp({"learning_rate": True}, {"learning_rate": 0.1}, space)
    {}
    """
    out = {}
    for k, v in hp.items():
        if isinstance(v, (bool, np.bool_, str, bytes)):
            continue  # float(True) is 1.0 and float("0.5") is 0.5: neither is a number
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if k not in known or not math.isfinite(v):
            continue
        if space is not None and k in space:
            if not space[k].dynamic:
                continue
            v = float(space[k].clip(np.float32(v)))
        out[k] = v
    return out


def python_values(hp: Mapping[str, float], space: Space | None) -> dict[str, Any]:
    """Host values as an advisor reads them: a non-numeric choice as its value
    (``"sgd"``), not the index the state carries."""
    out = dict(hp)
    for k, v in hp.items():
        if space is not None and k in space:
            out[k] = space[k].to_python(v) if _named_choice(space[k]) else v
    return out


def device_values(hp: Mapping[str, Any], space: Space | None) -> dict[str, Any]:
    """Advice as the state carries it: a non-numeric choice's value (``"sgd"``) as its
    index; a value that is not a choice of it is left for :func:`clamp` to drop."""
    out = dict(hp)
    for k, v in hp.items():
        if space is not None and k in space and _named_choice(space[k]):
            values = list(space[k].values)
            out[k] = values.index(v) if v in values else v
    return out


def _named_choice(dim: Any) -> bool:
    return isinstance(dim, Choice) and not dim.numeric


def noise_scale(history: list[dict]) -> float:
    """Spawn noise from the validation slope, the train-validation gap and their
    correlation over the last 10 evaluations (see :func:`spawn_noise`).

    >>> flat = [{"score": 0.5, "train_score": 0.6}] * 3
    >>> 0.02 <= noise_scale(flat) <= 0.5
    True
    """
    recent = [h for h in history[-10:] if math.isfinite(h["score"])]
    vals = [h["score"] for h in recent]
    trains = [h["train_score"] for h in recent]
    if any(t is None or not math.isfinite(t) for t in trains):  # only whole pairs count
        trains = [None] * len(vals)
    slope = float(np.polyfit(np.arange(len(vals)), vals, 1)[0]) if len(vals) > 1 else 0.0
    gap, corr = 0.0, 1.0
    if len(vals) > 1 and all(t is not None for t in trains):
        gap = (trains[-1] - vals[-1]) / max(abs(trains[-1]), 1e-12)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.corrcoef(trains, vals)[0, 1]
        corr = float(c) if np.isfinite(c) else 0.0
    spread = float(np.std(vals)) if vals else 0.0
    return spawn_noise(slope / max(spread, 1e-12), gap, corr)


def floats(hp: dict) -> dict:
    """Host floats of scalar (or first-member) hyperparameter values."""
    return {k: float(np.asarray(v).ravel()[0]) for k, v in hp.items()}


class Steering:
    """The Loop's decisions on a plateau (ask the advisor) and on DORMANT (prune, spawn
    or stop), as methods over the Loop's state and its compiled program; and the
    helpers they share with it (callbacks, checkpoints, the values in force, host
    copies). With a mesh over several processes, callbacks run on process 0 only."""

    _mesh: Any = None  # a MeshLayout (see multihost.py), or None

    def _fire(self, name: str, *args) -> None:
        if self._mesh is not None and not self._mesh.lead:
            return  # process 0 writes the files, prints, and asks for stop()/prune()
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is None:
                continue
            try:
                fn(self, *args)
            except Exception as err:  # noqa: BLE001 - a callback must not stop training
                msg = f"{type(cb).__name__}.{name}: {type(err).__name__}: {err}"
                self.callback_errors.append(msg)
                warnings.warn(f"callback failed, training goes on: {msg}", stacklevel=3)

    def _wants(self, name: str) -> bool:  # the same on every process: a host read may follow
        return any(overrides(cb, name) for cb in self.callbacks)

    def _get(self, tree: Any) -> Any:
        """Host copies (with a mesh over several processes: on every process)."""
        return jax.device_get(tree) if self._mesh is None else self._mesh.get(tree)

    def _placed(self, batches: tuple | None) -> tuple | None:
        """A window of live data for the compiled calls (on the mesh, with one)."""
        return batches if self._mesh is None else self._mesh.inputs(batches)

    def _save(self, r, window: int, carry: Carry, score: float | None) -> None:
        """Everything a resumed run needs: the program's carry (and a single run's earlier
        variants, whose best states make its ensemble) and the host's bookkeeping."""
        if self.checkpoints is None:
            return
        variants = sorted(r.members.items())
        tree: Any = carry
        if variants:
            tree = {"carry": carry, "variants": {str(w): st for w, (_, st) in variants}}
        self.checkpoints.save(
            window,
            tree,
            score,
            backoff=self.backoff.state_dict(),
            history=r.history,
            rollbacks=r.rollbacks,
            spawns=r.spawns,
            on_target=r.on_target,
            reason=r.reason,
            variants=[[w, s] for w, (s, _) in variants],
        )

    @staticmethod
    def _saved_like(carry: Carry, entry: dict) -> Any:
        """The structure :meth:`_save` wrote for ``entry``, with ``carry``'s leaves."""
        if not entry.get("variants"):
            return carry
        variants = {str(w): carry.best.state for w, _ in entry["variants"]}
        return {"carry": carry, "variants": variants}

    def _headline(self, score: np.ndarray) -> tuple[float, int]:
        """The run's score (a population's: its best member's) and that member."""
        if self.population is None:
            return float(score), 0
        finite = np.where(np.isfinite(score), score, -np.inf)
        member = int(np.argmax(finite))
        return float(score[member]), member

    def _in_force(self, state) -> dict:
        hp = get_hparams(state)
        names = self.program.names
        return hp if names is None else {k: hp[k] for k in names if k in hp}

    def _react(self, carry: Carry, headline: float, d, window: int, r) -> Carry:
        """Plateau: ask the advisor. DORMANT: the controller. Then the target."""
        if d.transition and d.transition[1] is Phase.COOLING:
            self._fire("on_plateau", window, headline)
            if self.advisor is not None:
                carry = self._advise(carry, window, r)
        if d.transition and d.transition[1] in (Phase.DORMANT, Phase.WATCHDOG):
            self._fire("on_dormant", window, headline)
            if d.transition[1] is Phase.DORMANT and not self._data:  # a stream goes on
                carry = self._dormant(carry, window, r)
        if self.target is not None and math.isfinite(headline) and headline >= self.target:
            r.on_target += 1
            if r.on_target >= self.target_patience:
                r.reason = "target"
        else:
            r.on_target = 0
        return carry

    def _advise(self, carry: Carry, window: int, r) -> Carry:
        from ..advisors.context import AdviceContext
        from ..advisors.validate import validate

        hp = self._get(self._in_force(carry.best.state if r.best_window >= 0 else carry.state))
        history = []
        for h in r.history[-20:]:
            # the advisor's keys; a loss the history holds as None (non-finite, kept
            # JSON-safe there) goes back to NaN, which a diagnosis reads as divergence
            row = {"epoch": h["window"], "val_score": h["score"]}
            row["train_score"] = h["train_score"]
            for k in ("val_loss", "train_loss"):
                if k in h:
                    row[k] = math.nan if h[k] is None else h[k]
            history.append(row)
        max_windows = self.max_windows
        context = AdviceContext(
            space=self.space,
            hparams=python_values(floats(hp), self.space),
            history=history,
            budget_left=None if max_windows is None else max(max_windows - window - 1, 0),
            round=window,
        )

        def ask() -> tuple[Any, dict, str | None]:
            try:
                advice = self.advisor.advise(context)
                return advice, dict(advice.hparams), None
            except Exception as err:  # noqa: BLE001 - a failing advisor must not stop training
                return None, {}, f"advisor: {type(err).__name__}: {err}"

        # several processes: process 0 asks, every process applies its reply
        advice, proposed, msg = ask() if self._mesh is None else self._mesh.consult(ask)
        if msg is not None:
            self.callback_errors.append(msg)
            warnings.warn(f"advisor failed, training goes on: {msg}", stacklevel=2)
            return carry
        self._fire("on_advice", window, advice)
        # any advisor's proposal is data: checked against the space (wrong types and
        # unknown names refused, values clipped) before it reaches the state
        proposed = validate(proposed, self.space).hparams
        return self._apply(carry, device_values(proposed, self.space), window, "advisor")

    def _apply(self, carry: Carry, hp: dict, window: int, source: str) -> Carry:
        hp = clamp(hp, get_hparams(carry.state), self.space)
        if hp and self._mesh is not None:  # written in place on the mesh
            carry = self._mesh.set_hparams(carry, hp)
        elif hp:
            carry = carry._replace(state=set_hparams(carry.state, hp))
        if hp:
            self._fire("on_hparams_update", window, hp, source)
        return carry

    def _prune_members(self, carry: Carry, window: int, k: int) -> Carry:
        before = np.asarray(self._get(carry.alive))
        carry = self._prune_fn(carry, np.int32(k))
        after = np.asarray(self._get(carry.alive))
        gone = np.flatnonzero(before & ~after).tolist()
        if gone:
            self._fire("on_prune", window, gone)
        return carry

    def _dormant(self, carry: Carry, window: int, r) -> Carry:
        trains = [h["train_score"] for h in r.history]
        action = self.controller.decide(
            [h["score"] for h in r.history],
            trains if all(t is not None for t in trains) else None,
            r.spawns,
        )
        key = jax.random.fold_in(carry.key, window)
        alive = int(np.sum(self._get(carry.alive))) if self.population else 1
        if self.population is not None and action in (Action.SPAWN, Action.PRUNE) and alive > 1:
            carry = self._prune_members(carry, window, alive // 2)
            if action is Action.SPAWN:
                carry, parents = self._spawn_fn(carry, key, None, noise_scale(r.history))
                r.spawns += 1
                self._fire("on_spawn", window, np.asarray(self._get(parents)).tolist())
        elif self.population is None and action is Action.SPAWN and r.best_window >= 0:
            r.members[r.best_window] = (r.best_score, carry.best.state)
            carry, _ = self._spawn_fn(carry, key, None, noise_scale(r.history))
            r.spawns += 1
            self._fire(
                "on_hparams_update",
                window,
                floats(self._get(self._in_force(carry.state))),
                "spawn",
            )
        else:
            r.reason = "dormant" if action is not Action.STOP else "spawn budget spent"
            return carry
        self.backoff.reset()
        self.backoff.best = r.best_score
        return carry
