"""Population benchmark, part ``toy``: a best learning rate that moves.

Online linear regression where the curvature follows a triangle wave in time (1 to 100
and back), so the range of good SGD learning rates moves by a factor of 100 and back: a
rate that is stable at the peak curvature (below about 0.02) lags the drifting target
weights when the curvature is low, and a rate fast enough there diverges at the peak. A
PBT population of 4 (initial learning rates 1e-3, 1e-2, 1e-1, 1) against each of those
4 held fixed and a grid of 13 fixed rates, every one of them a ``hj.program`` population
(PBT, or ``hj.fixed()`` per member). Target: excess error ``|w - w*|^2 <= 0.05`` (five
times the noise variance) in at least 90% of the windows, for PBT's best member in each
window.

    python benchmarks/population.py --part toy --seeds 5
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj
from _common import HERE, Measure


class Toy(NamedTuple):
    dim: int = 8
    batch: int = 32
    steps: int = 20  # SGD steps per window
    half_period: int = 40  # windows from low to high curvature
    periods: int = 2
    scale_max: float = 10.0  # input scale: curvature from 1 to scale_max**2
    drift: float = 0.2  # per-window random walk of the target weights (per coordinate)
    noise: float = 0.1  # label noise, relative to the input scale
    threshold: float = 0.05  # excess error counted as "on target"
    fraction: float = 0.9  # share of windows that must be on target


TOY_SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))


def toy_scale(toy: Toy):
    """The input scale of window ``t``: a triangle wave in log scale, 1 to ``scale_max``."""

    def scale(t):
        phase = jnp.mod(t, 2 * toy.half_period) / toy.half_period
        tri = jnp.where(phase < 1, phase, 2 - phase)
        return toy.scale_max**tri

    return scale


def toy_task(toy: Toy, drift_key: jax.Array) -> hj.Task:
    """The toy as a :class:`hagfish_jax.Task` (see :func:`toy_program`); ``drift_key``
    fixes the target's random walk, shared by every member."""
    tx = optax.inject_hyperparams(optax.sgd, hyperparam_dtype=jnp.float32)(learning_rate=0.1)
    scale = toy_scale(toy)

    def init(key, hp):
        w = jnp.zeros(toy.dim)
        state = {"w": w, "opt": tx.init(w), "t": jnp.int32(0), "w_star": jnp.zeros(toy.dim)}
        return hj.set_hparams(state, hp)

    def train_window(state, key):
        t, s = state["t"], scale(state["t"])
        drift = jax.random.normal(jax.random.fold_in(drift_key, t), (toy.dim,))
        w_star = state["w_star"] + toy.drift * drift

        def step(carry, k):
            w, opt = carry
            kx, ke = jax.random.split(k)
            x = s * jax.random.normal(kx, (toy.batch, toy.dim))
            y = x @ w_star + toy.noise * s * jax.random.normal(ke, (toy.batch,))
            grad = jax.grad(lambda w: 0.5 * jnp.mean((x @ w - y) ** 2))(w)
            updates, opt = tx.update(grad, opt, w)
            return (optax.apply_updates(w, updates), opt), None

        keys = jax.random.split(key, toy.steps)
        (w, opt), _ = jax.lax.scan(step, (state["w"], state["opt"]), keys)
        return {"w": w, "opt": opt, "t": t + 1, "w_star": w_star}, {}

    def evaluate(state):
        err = jnp.sum((state["w"] - state["w_star"]) ** 2)
        err = jnp.where(jnp.isfinite(err), err, jnp.inf)
        return {"score": -jnp.log10(err + toy.noise**2), "err": err}

    return hj.Task(
        init=init,
        train_window=train_window,
        evaluate=evaluate,
        space=TOY_SPACE,
        default_hparams={"learning_rate": 0.1},
        name="toy",
        # a rollback restores the weights and the optimizer, never the clock or target
        restore=hj.restore_only("w", "opt"),
    )


def toy_program(toy: Toy, lrs: Sequence[float], tuner: hj.Tuner):
    """Online linear regression with a triangle-wave curvature; ``lrs`` members.

    Window ``t`` draws inputs ``x ~ N(0, s(t)^2 I)`` with ``s`` a triangle wave in log
    scale between 1 and ``scale_max``, so the curvature ``s^2`` goes from 1 to 100 and
    back and the largest stable SGD learning rate (about ``2/s^2``) from about 2 to
    0.02. The target weights ``w*`` take a random-walk step every window; labels carry
    noise of standard deviation ``noise * s``. Each member runs ``steps`` minibatch SGD
    steps per window; its excess error ``|w - w*|^2`` (the expected excess squared error
    divided by ``s^2``) is measured after the window, and ``-log10(error + noise^2)`` is
    the score PBT ranks.

    The problem is a :class:`hagfish_jax.Task` run by ``hj.program`` (population
    ``len(lrs)``). Each member's state carries the clock ``t`` and ``w*``; the drift is
    drawn from a key shared by every member and ``t``, so all members (and copies of
    them) see the same target. ``run(key) -> (errors, learning rates)``, each
    ``(windows, len(lrs))``; the learning rates are those each window trained with.
    """
    n = len(lrs)
    windows = 2 * toy.half_period * toy.periods
    scale = toy_scale(toy)

    def run(key):
        k_drift, k_run = jax.random.split(key)
        program = hj.program.build(
            toy_task(toy, k_drift), tuner, population=n, windows=windows
        )
        carry = program.init(k_run, {"learning_rate": jnp.asarray(lrs, jnp.float32)})
        rows = hj.program.scan(program, carry, windows)[1]
        return rows["err"], rows["learning_rate"]

    return jax.jit(run), scale


def part_toy(args) -> dict:
    toy = Toy(half_period=10, steps=20) if args.quick else Toy()
    initial = [1e-3, 1e-2, 1e-1, 1.0]
    grid = [float(x) for x in np.logspace(-3, 0, 13)]
    pbt_run, scale = toy_program(
        toy, initial, hj.pbt(hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0)))
    )
    fixed_run, _ = toy_program(toy, grid, hj.fixed())
    seeds = list(range(args.seeds))
    on = lambda err: np.mean(np.where(np.isfinite(err), err, np.inf) <= toy.threshold, 0)
    rows: dict[str, list[float]] = {}
    lr_track = None
    with Measure() as m:
        for seed in seeds:
            err_p, lr_p = jax.device_get(pbt_run(jax.random.key(seed)))
            err_f, _ = jax.device_get(fixed_run(jax.random.key(seed)))
            if lr_track is None:
                lr_track = (err_p, lr_p, err_f)
            rows.setdefault("PBT, population of 4: best member per window", []).append(
                float(on(err_p.min(1)))
            )
            for i in range(4):
                rows.setdefault(f"PBT member {i} (followed through copies)", []).append(
                    float(on(err_p[:, i]))
                )
            for lr in initial:
                j = int(np.argmin(np.abs(np.asarray(grid) - lr)))
                rows.setdefault(f"fixed lr {lr:g} (an initial value)", []).append(
                    float(on(err_f[:, j]))
                )
            best_j = int(np.argmax(on(err_f)))
            rows.setdefault("best of the 13-value fixed grid (per seed)", []).append(
                float(on(err_f)[best_j])
            )
            four = [int(np.argmin(np.abs(np.asarray(grid) - lr))) for lr in initial]
            rows.setdefault("4 initial values fixed: best member per window", []).append(
                float(on(err_f[:, four].min(1)))
            )
            rows.setdefault("13-value fixed grid: best member per window", []).append(
                float(on(err_f.min(1)))
            )
    windows = 2 * toy.half_period * toy.periods
    print(
        f"\n== toy: online linear regression, curvature a triangle wave 1 -> "
        f"{toy.scale_max**2:g} -> 1 over {2 * toy.half_period} windows ({toy.periods} periods, "
        f"{windows} windows of {toy.steps} SGD steps), drift {toy.drift}/window"
    )
    print(
        f"share of windows with excess error |w - w*|^2 <= {toy.threshold}; target >= "
        f"{toy.fraction}; seeds {seeds}; {m.wall:.1f} s with {m.compiles} compiles"
    )
    print(f"{'run':<50} {'median':>7} {'min':>6} {'max':>6} {'reaches target':>15}")
    for name, vals in rows.items():
        hits = sum(v >= toy.fraction for v in vals)
        print(
            f"{name:<50} {statistics.median(vals):>7.3f} {min(vals):>6.3f} {max(vals):>6.3f} "
            f"{f'{hits}/{len(vals)} seeds':>15}"
        )
    if args.plot:
        plot_toy(toy, lr_track, initial, scale, HERE / "population_anytime_toy.png")
    return rows


def plot_toy(toy: Toy, track, initial, scale, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err_p, lr_p, err_f = track
    windows = err_p.shape[0]
    t = np.arange(windows)
    s = np.asarray(scale(jnp.arange(windows)))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax1.semilogy(t, 1 / s**2, "k--", label="1 / curvature")
    ax1.semilogy(
        np.repeat(t, lr_p.shape[1]),
        lr_p.ravel(),
        ".",
        ms=3,
        color="C0",
        label="PBT members' learning rates",
    )
    for lr in initial:
        ax1.axhline(lr, color="grey", lw=0.6)
    ax1.set_ylabel("learning rate")
    ax1.legend(fontsize=8)
    cap = lambda e: np.minimum(np.where(np.isfinite(e), e, 1e6), 1e6)
    ax2.semilogy(t, cap(err_p.min(1)), color="C0", label="PBT (best member)")
    grid = np.logspace(-3, 0, 13)
    for k, lr in enumerate(initial):
        j = int(np.argmin(np.abs(grid - lr)))
        ax2.semilogy(t, cap(err_f[:, j]), lw=0.8, color=f"C{k + 1}", label=f"fixed lr {lr:g}")
    ax2.axhline(toy.threshold, color="k", ls=":", label=f"target {toy.threshold}")
    ax2.set_ylim(1e-4, 1e6)
    ax2.set_xlabel("window")
    ax2.set_ylabel("excess error |w - w*|^2 (capped)")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    import sys

    import population

    population.main(["--part", "toy", *sys.argv[1:]])
