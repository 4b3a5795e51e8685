"""Live data: what prefetching buys, and tuning on a drifting stream.

Part 1 (prefetch): a host feed that spends ``--host-ms`` per batch (a slow reader or
an environment stepped on the host) and an MLP trained on its windows. The same run
with ``prefetch=0`` (each window produced when the loop asks for it) and
``prefetch=2`` (produced on a thread while the device trains): wall time, and the
time the loop waited for data.

Part 2 (drift): ``examples/streaming_drift.py`` on several seeds: the online loss
(each batch's loss before the model steps on it) of a fixed default learning rate,
one guarded run, random search at a population's compute, and PBT.

    python benchmarks/stream.py
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time
from datetime import date
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj

_spec = importlib.util.spec_from_file_location(
    "streaming_drift", Path(__file__).resolve().parents[1] / "examples" / "streaming_drift.py"
)
drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drift)


def mlp_task(dim: int, hidden: int) -> hj.Task:
    model = nn.Sequential([nn.Dense(hidden), nn.relu, nn.Dense(hidden), nn.relu, nn.Dense(1)])
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))

    def loss_fn(params, batch):
        return jnp.mean((model.apply(params, batch["x"])[:, 0] - batch["y"]) ** 2)

    def init(key, hp):
        params = model.init(key, jnp.zeros((1, dim)))
        return hj.set_hparams({"params": params, "opt": tx.init(params)}, hp)

    def train_window(state, key, batches):
        def step(s, batch):
            loss, g = jax.value_and_grad(loss_fn)(s["params"], batch)
            u, opt = tx.update(g, s["opt"], s["params"])
            return {"params": optax.apply_updates(s["params"], u), "opt": opt}, loss

        state, losses = jax.lax.scan(step, state, batches)
        return state, {"online_loss": jnp.mean(losses)}

    def evaluate(state, batches):
        loss = jnp.mean(jax.vmap(loss_fn, in_axes=(None, 0))(state["params"], batches))
        return {"score": -loss, "val_loss": loss}

    return hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=space,
                   default_hparams={"learning_rate": 1e-3}, name="stream_mlp")


def feed(count: int, batch: int, dim: int, host_ms: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    for _ in range(count):
        deadline = time.perf_counter() + host_ms / 1000
        x = rng.normal(size=(batch, dim)).astype(np.float32)
        y = np.tanh(x @ w / np.sqrt(dim)).astype(np.float32)
        while time.perf_counter() < deadline:  # host work (a busy wait holds the GIL)
            pass
        yield {"x": x, "y": y}


def prefetch_table(args) -> list[str]:
    task = mlp_task(args.dim, args.hidden)
    loop = hj.Loop(task=task, tuner=hj.pbt(task.space), population=args.population)
    count = args.windows * (args.window + 1)
    hparams = task.space.sample(jax.random.key(1), args.population)
    # compile once outside the timings (and measure the device's own time per window)
    loop.run(key=jax.random.key(0), hparams=hparams,
             data=hj.Stream(feed(2 * (args.window + 1), args.batch, args.dim, 0.0),
                            window=args.window))
    start = time.perf_counter()
    loop.run(key=jax.random.key(0), hparams=hparams,
             data=hj.Stream(feed(count, args.batch, args.dim, 0.0), window=args.window))
    device_s = (time.perf_counter() - start) / args.windows
    rows, base = [], None
    for prefetch in (0, 2):
        stream = hj.Stream(feed(count, args.batch, args.dim, args.host_ms), window=args.window,
                           prefetch=prefetch)
        start = time.perf_counter()
        with stream:
            loop.run(key=jax.random.key(0), hparams=hparams, data=stream)
        wall = time.perf_counter() - start
        base = base or wall
        rows.append(f"| {prefetch} | {wall:.2f} | {stream.stats['wait_s']:.2f} | "
                    f"{base / wall:.2f}x |")
    host_s = (args.window + 1) * args.host_ms / 1000
    return [
        f"population {args.population}, {args.windows} windows of {args.window} batches of "
        f"{args.batch} (+1 held out); host {host_s * 1000:.0f} ms a window, training "
        f"{device_s * 1000:.0f} ms a window with data ready",
        "",
        "| prefetch | wall s | waited for data s | speed-up |",
        "|---|---|---|---|",
        *rows,
    ]


def drift_table(args) -> list[str]:
    task = drift.make_task()
    out = {t: [] for t in ("fixed", "guard", "random", "pbt")}
    for seed in range(args.seeds):
        for tuner in out:
            r = drift.run_one(tuner, seed, windows=args.drift_windows, task=task)
            out[tuner].append(r["online_loss"])
    lines = ["| run | online loss, median | per seed |", "|---|---|---|"]
    for tuner, losses in out.items():
        per = ", ".join(f"{v:.3f}" for v in losses)
        lines.append(f"| {tuner} | {np.median(losses):.3f} | {per} |")
    wins = sum(p < r for p, r in zip(out["pbt"], out["random"]))
    lines.append("")
    lines.append(f"pbt below fixed on {sum(p < f for p, f in zip(out['pbt'], out['fixed']))}"
                 f"/{args.seeds} seeds, below random search on {wins}/{args.seeds}")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--host-ms", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--drift-windows", type=int, default=60)
    args = parser.parse_args(argv)
    print(f"{date.today()}, {platform.processor() or platform.machine()}, "
          f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    print("\n".join(prefetch_table(args)))
    print()
    print("\n".join(drift_table(args)))


if __name__ == "__main__":
    main()
