"""Learned controller benchmark (issue 14).

1. Meta-train a controller on the training distribution (generated tabular tasks
   only by default: every reported task is held out, data set and model), and
   measure meta-training throughput: inner optimizer steps per second with
   ``--runs`` vmapped inner runs against one inner run.
2. On each held-out task (image: the digits CNN; text: the docstrings bag of
   embeddings; tabular: breast cancer and wine), compare at equal compute, ``--members``
   runs of ``windows`` windows per method and seed, selected on validation:

   * fixed default: reference 003's starting values;
   * learned: each run tuned by its own copy of the controller;
   * grid: learning rate {1e-4, 1e-3, 1e-2, 1e-1} x dropout {0.1, 0.5};
   * random: configurations drawn uniformly from the space;
   * PBT: a population of ``--members`` from random starts;
   * guard(bayes): each run tuned in training by guarded Bayesian optimisation.

   Reported (median over seeds): test accuracy and macro F1 of the selected run,
   its final validation loss, windows until its validation loss plateaued, the
   stability of the hyperparameter trajectories (mean over windows and dimensions of
   the standard deviation across runs, in the unit cube; 0 = every run moved alike),
   wall seconds per seed (compile excluded), and the tuner's cost per decision.
   The "1 run" rows give the mean over members: what one run of the method gets.

    python benchmarks/controller.py                     # about 25 minutes here
    python benchmarks/controller.py --quick             # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import hagfish_jax as hj
from hagfish_jax.control import data, meta, suite
from hagfish_jax.control.tasks import make_task


def _args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--runs", type=int, default=32)
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--tasks", default="image,text,tabular,wine")
    p.add_argument("--controller", default=None, help="use (or resume) this directory")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.iterations, a.runs, a.members, a.seeds, a.steps = 3, 8, 4, 2, 3
        a.tasks = "wine"
    return a


def meta_training(a):
    bank = make_task(
        data.training_splits(0, hold_out=("digits", "breast_cancer", "wine"), synthetic=12),
        steps_per_window=a.steps,
        name="bank",
    )
    config = meta.MetaConfig(runs=a.runs, windows=a.windows)
    t0 = time.perf_counter()
    result = meta.meta_train(
        bank, a.iterations, config, key=0, directory=a.controller,
        callback=lambda r: print(
            f"  it {r['iteration']:4d} return {r['mean_return']:.3f} "
            f"val loss {r['final_val_loss']:.3f} ({r['seconds']:.1f}s)", flush=True
        ) if r["iteration"] % 10 == 0 or r["iteration"] == 1 else None,
    )
    minutes = (time.perf_counter() - t0) / 60
    h = result.history
    if not h:  # --controller named a finished training: its controller is reused
        print(f"\nmeta-training: reused {a.controller} ({result.controller.iterations} "
              "iterations); no throughput measured\n")
        return result.controller
    print(f"\nmeta-training: {result.controller.iterations} iterations x {a.runs} runs "
          f"in {minutes:.1f} min (this call); first 10 mean return "
          f"{np.mean([r['mean_return'] for r in h[:10]]):.3f}, last 10 "
          f"{np.mean([r['mean_return'] for r in h[-10:]]):.3f}")
    one = meta.meta_train(
        bank, 4, meta.MetaConfig(runs=1, windows=a.windows, num_minibatches=2), key=1
    )
    n_rate, one_rate = result.inner_steps_per_second, one.inner_steps_per_second
    print(f"throughput: {a.runs} vmapped inner runs {n_rate:.0f} inner steps/s, one inner run "
          f"{one_rate:.0f} inner steps/s, ratio {n_rate / one_rate:.1f}x\n")
    return result.controller


def methods(task, controller, members):
    space = task.space
    grid = [(lr, dr) for lr in (1e-4, 1e-3, 1e-2, 1e-1) for dr in (0.1, 0.5)]

    def grid_start(key):
        lr = jnp.asarray([g[0] for g in grid][:members] * (members // len(grid) or 1))[:members]
        dr = jnp.asarray([g[1] for g in grid][:members] * (members // len(grid) or 1))[:members]
        return {"learning_rate": lr, "dropout_rate": dr}

    def random_start(key):
        return space.sample(key, members)

    return {
        "fixed default": (hj.fixed(), None),
        "learned": (hj.learned(controller, space), None),
        "grid": (hj.fixed(), grid_start),
        "random": (hj.fixed(), random_start),
        "PBT": (hj.pbt(space), random_start),
        "guard(bayes)": (hj.guard(hj.bayes(space), space=space), None),
    }


def main():
    a = _args()
    print(f"devices: {jax.devices()}")
    controller = meta_training(a)
    windows = controller.spec.horizon
    seeds = list(range(a.seeds))
    table = []
    for name in a.tasks.split(","):
        task = suite.eval_task(name, 0, steps_per_window=a.steps)
        print(f"== {name}: {a.members} runs x {windows} windows x {a.steps} steps per method")
        for method, (tuner, start) in methods(task, controller, a.members).items():
            res = suite.evaluate_tuner(task, tuner, windows, a.members, keys=seeds, hparams=start)
            pick = [r["selected"] for r in res]

            def sel(k, res=res, pick=pick):
                return statistics.median(float(r[k][i]) for r, i in zip(res, pick))

            def mean(k, res=res):
                return statistics.median(float(np.mean(r[k])) for r in res)

            std = statistics.median(float(np.mean(list(r["trajectory_std"].values()))) for r in res)
            secs = statistics.median(r["seconds"] for r in (res[1:] or res))
            ms = suite.decision_ms(tuner, task) if method in ("learned", "guard(bayes)") else 0.0
            row = (name, method, sel("test_accuracy"), sel("test_f1"), mean("test_accuracy"),
                   sel("final_val_loss"), sel("plateau"), std, secs, ms)
            table.append(row)
            print("  " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row),
                  flush=True)
    print("\n| task | method | test acc (selected) | test F1 | test acc (1 run) | val loss | "
          "plateau | trajectory std | s/seed | ms/decision |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.4f} | "
              f"{r[6]:.0f} | {r[7]:.3f} | {r[8]:.1f} | {r[9]:.2f} |")


if __name__ == "__main__":
    main()
