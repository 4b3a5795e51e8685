"""Tuning on live data: a stream whose distribution drifts, fed to ``hj.Loop``.

A host-side generator produces regression batches ``y = x @ w(t) + noise`` whose true
weights ``w(t)`` wander (a random walk) and jump to new values now and then: the
data a model sees keeps changing, and so does the learning rate that serves it best.
``hj.Stream`` pulls windows of batches from the generator on a background thread
(the next window is ready while the device trains on this one) and holds the newest
batches out for validation; ``hj.Loop(..., ).run(key, data=stream)`` trains while the
stream lasts and tunes the learning rate in training.

Every window's training loss is measured on each batch before the model steps on
it (test, then train), so its mean over the stream is the model's online loss: what
a deployed model would have scored. The script compares a fixed learning rate with
the same run tuned by the guarded finite-difference tuner and by a PBT population.

    python examples/streaming_drift.py
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 0.5))
DEFAULT_LR = 1e-3


def drifting_batches(seed: int, batches: int, batch_size: int = 32, dim: int = 8,
                     drift: float = 0.03, jump_every: int = 150, noise: float = 0.1,
                     host_ms: float = 0.0):
    """A generator of ``{"x", "y"}`` batches whose true weights drift and jump.

    ``host_ms``: milliseconds of host work per batch (a slow feed or environment)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    for i in range(batches):
        if host_ms:
            time.sleep(host_ms / 1000)
        if jump_every and i and i % jump_every == 0:
            w = rng.normal(size=dim)
        w = w + drift * rng.normal(size=dim)
        x = rng.normal(size=(batch_size, dim)).astype(np.float32)
        y = (x @ w + noise * rng.normal(size=batch_size)).astype(np.float32)
        yield {"x": x, "y": y}


def make_task(dim: int = 8) -> hj.Task:
    """A linear model trained by SGD with an injected learning rate, on stream
    windows: ``train_window(state, key, batches)`` scans the window's batches."""
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=DEFAULT_LR)

    def mse(w, batch):
        return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

    def init(key, hparams):
        w = jnp.zeros(dim)
        return hj.set_hparams({"w": w, "opt": tx.init(w)}, hparams)

    def train_window(state, key, batches):
        def step(s, batch):
            loss, g = jax.value_and_grad(mse)(s["w"], batch)  # measured before the step
            u, opt = tx.update(g, s["opt"], s["w"])
            return {"w": s["w"] + u, "opt": opt}, loss

        state, losses = jax.lax.scan(step, state, batches)
        return state, {"online_loss": jnp.mean(losses)}

    def evaluate(state, batches):
        loss = jnp.mean(jax.vmap(mse, in_axes=(None, 0))(state["w"], batches))
        return {"score": -loss, "val_loss": loss}

    return hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=SPACE,
                   default_hparams={"learning_rate": DEFAULT_LR}, name="drifting_stream")


class OnlineLoss(hj.Callback):
    """Each window's online loss of the model one would deploy: for a population, the
    member that scored best at the previous evaluation (not the best in hindsight)."""

    def __init__(self):
        self.losses: list[float] = []
        self.deployed = 0

    def on_window_end(self, loop, window, metrics):
        loss = np.asarray(jax.device_get(metrics["online_loss"])).reshape(-1)
        self.losses.append(float(loss[self.deployed]))

    def on_evaluation(self, loop, window, evaluation, transition):
        score = np.asarray(jax.device_get(evaluation["score"])).reshape(-1)
        self.deployed = int(np.argmax(np.where(np.isfinite(score), score, -np.inf)))


def run_one(tuner: str, seed: int = 0, windows: int = 60, window: int = 10,
            population: int = 8, prefetch: int = 2, host_ms: float = 0.0,
            task: hj.Task | None = None) -> dict:
    """One run on a fresh stream of ``windows`` windows: ``tuner`` is ``"fixed"`` (the
    default learning rate), ``"guard"`` (one run, guarded finite differences),
    ``"random"`` (a population at random fixed learning rates: random search at PBT's
    compute) or ``"pbt"`` (a population)."""
    task = task or make_task()
    batches = drifting_batches(seed, windows * (window + 1), host_ms=host_ms)
    stream = hj.Stream(batches, window=window, validation=1, prefetch=prefetch)
    online = OnlineLoss()
    if tuner == "fixed":
        loop = hj.Loop(task=task, callbacks=[online])
    elif tuner == "guard":
        loop = hj.Loop(task=task, tuner=hj.guard(hj.finite_difference(SPACE), warmup=2,
                                                 space=SPACE), callbacks=[online])
    elif tuner in ("pbt", "random"):
        loop = hj.Loop(task=task, tuner=hj.pbt(SPACE) if tuner == "pbt" else None,
                       population=population, callbacks=[online])
    else:
        raise ValueError(f"run_one: tuner must be fixed, guard, random or pbt, got {tuner!r}")
    hparams = None
    if tuner != "fixed" and tuner != "guard":  # the population starts spread over the space
        hparams = SPACE.sample(jax.random.key(seed + 1000), population)
    start = time.perf_counter()
    with stream:
        result = loop.run(key=jax.random.key(seed), data=stream, hparams=hparams)
    return {
        "tuner": tuner,
        "online_loss": float(np.mean(online.losses)),
        "losses": online.losses,
        "learning_rate": result.hparams["learning_rate"],
        "windows": result.windows,
        "reason": result.reason,
        "seconds": time.perf_counter() - start,
        "waited_s": stream.stats["wait_s"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--windows", type=int, default=60)
    args = parser.parse_args(argv)
    task = make_task()
    print(f"{'tuner':6} {'seed':>4} {'online loss':>12} {'final lr':>9} {'windows':>7}")
    for seed in range(args.seeds):
        for tuner in ("fixed", "guard", "random", "pbt"):
            r = run_one(tuner, seed, args.windows, task=task)
            print(f"{tuner:6} {seed:>4} {r['online_loss']:>12.4f} {r['learning_rate']:>9.3g} "
                  f"{r['windows']:>7}")


if __name__ == "__main__":
    main()
