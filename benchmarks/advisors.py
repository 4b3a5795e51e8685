"""Advisors benchmark (issue 13): the offline council against random search and TPE.

Trial level: on the harder digits variant (the small CNN, 25% of the train split) and
on breast cancer, ``--rounds`` rounds of ``hagfish hpo``'s heuristic council against
as many trials of random search and of Optuna's TPE over the same space (optimizer,
learning rate, batch size, weight decay, label smoothing), every trial trained by the
same executor (same epochs, same early-stopping patience, same data split and keys).
Per method and seed: the test accuracy of the trial with the best validation accuracy
(ties to the lower validation loss), the rounds until a trial came within 0.5 points
of the best validation accuracy any method reached on that seed (``>R``: never), the
epochs trained and the wall time.

In training (``--part loop``): ``hj.Loop`` with a population of 8 under PBT on the same
two tasks, with and without the council as its advisor on plateaus; the test accuracy
of the Loop's returned (best) member.

    python benchmarks/advisors.py                 # 5 seeds, both parts
    python benchmarks/advisors.py --seeds 2 --rounds 4 --epochs 6   # quick look
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

import jax
import numpy as np

import hagfish_jax as hj
from hagfish_jax.shell.hpo import Executor, HpoConfig, run_hpo, task_family

TASKS = {
    "digits-cnn-25%": dict(task="digits", model="cnn", train_fraction=0.25),
    "breast_cancer": dict(task="breast_cancer"),
}


def _sample(space: hj.Space, rng: np.random.Generator) -> dict:
    out = {}
    for name, dim in space.dims.items():
        if isinstance(dim, hj.Choice):
            out[name] = dim.values[int(rng.integers(len(dim.values)))]
        elif isinstance(dim, hj.LogUniform):
            out[name] = float(math.exp(rng.uniform(math.log(dim.low), math.log(dim.high))))
        else:
            out[name] = float(rng.uniform(dim.low, dim.high))
    return out


def _pick(summaries: list[dict]) -> dict:
    done = [s for s in summaries if s.get("status", "finished") == "finished"]
    return max(done, key=lambda s: (s["best_val_accuracy"], -s["best_val_loss"]))


def run_council(config: HpoConfig, family) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = run_hpo(config, out, family=family, plots=False)
    summaries = [result.summaries[k] for k in sorted(result.summaries)]
    return summaries, time.perf_counter() - t0


def run_random(config: HpoConfig, family) -> tuple[list[dict], float]:
    build, space, _ = family
    ex = Executor(build, space, config.epochs, config.patience)
    rng = np.random.default_rng(config.seed)
    t0 = time.perf_counter()
    out = []
    for r in range(config.rounds):
        key = jax.random.fold_in(jax.random.key(config.seed), r)
        out.append(ex.run(_sample(space, rng), key).summary)
    return out, time.perf_counter() - t0


def run_tpe(config: HpoConfig, family) -> tuple[list[dict], float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    build, space, _ = family
    ex = Executor(build, space, config.epochs, config.patience)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    out = []

    def objective(trial):
        hp = {}
        for name, dim in space.dims.items():
            if isinstance(dim, hj.Choice):
                hp[name] = trial.suggest_categorical(name, list(dim.values))
            else:
                hp[name] = trial.suggest_float(
                    name, dim.low, dim.high, log=isinstance(dim, hj.LogUniform)
                )
        key = jax.random.fold_in(jax.random.key(config.seed), trial.number)
        s = ex.run(hp, key).summary
        out.append(s)
        return s["best_val_accuracy"]

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=config.rounds)
    return out, time.perf_counter() - t0


METHODS = {"council": run_council, "random": run_random, "tpe": run_tpe}


def _rounds_to(summaries: list[dict], target: float) -> int | None:
    for i, s in enumerate(summaries):
        acc = s.get("best_val_accuracy")
        if acc is not None and acc >= target - 0.005:
            return i + 1
    return None


def trial_level(args) -> None:
    for label, opts in TASKS.items():
        table: dict[str, dict[str, list]] = {m: {"test": [], "rounds": [], "epochs": [],
                                                 "wall": []} for m in METHODS}
        for seed in range(args.seeds):
            config = HpoConfig(rounds=args.rounds, epochs=args.epochs, patience=args.patience,
                               seed=seed, **opts)
            family = task_family(config)
            ex = Executor(*family[:2], epochs=1, patience=1)  # compile before timing
            for b in family[1]["batch_size"].values:
                ex._functions(int(b))
            results = {m: fn(config, family) for m, fn in METHODS.items()}
            best = max(s["best_val_accuracy"] for out, _ in results.values() for s in out
                       if s.get("best_val_accuracy") is not None)
            for m, (out, wall) in results.items():
                picked = _pick(out)
                table[m]["test"].append(picked["test_accuracy"])
                table[m]["rounds"].append(_rounds_to(out, best))
                table[m]["epochs"].append(sum(s.get("epochs", 0) for s in out))
                table[m]["wall"].append(wall)
            print(f"  {label} seed {seed}: " + ", ".join(
                f"{m} {table[m]['test'][-1]:.4f}" for m in METHODS), flush=True)
        print(f"\n== {label}: {args.rounds} trials of up to {args.epochs} epochs (patience "
              f"{args.patience}), seeds 0-{args.seeds - 1}")
        print(f"{'method':<10} {'test acc (median [min-max])':>30} {'rounds to 0.5 pt':>18} "
              f"{'epochs':>8} {'wall s':>8}")
        for m in METHODS:
            t = table[m]
            rounds = [r if r is not None else args.rounds + 1 for r in t["rounds"]]
            shown = statistics.median(rounds)
            shown = f">{args.rounds}" if shown > args.rounds else f"{shown:g}"
            print(f"{m:<10} {statistics.median(t['test']):>10.4f} "
                  f"[{min(t['test']):.4f}-{max(t['test']):.4f}] {shown:>18} "
                  f"{statistics.median(t['epochs']):>8g} {statistics.median(t['wall']):>8.1f}")
        med = {m: statistics.median(table[m]["test"]) for m in METHODS}
        print(f"council - random: {med['council'] - med['random']:+.4f}; council - tpe: "
              f"{med['council'] - med['tpe']:+.4f} (median test accuracy)")


def loop_level(args) -> None:
    from hagfish_jax.shell.advisors import Council
    from hagfish_jax.shell.loop import Backoff, Loop

    for label, opts in TASKS.items():
        rows = {"pbt": [], "pbt + council": []}
        asked = []
        for seed in range(args.seeds):
            config = HpoConfig(seed=seed, **opts)
            build, _, _ = task_family(config)
            task = build(64 if opts["task"] == "digits" else 32)
            test = jax.jit(task.test)
            for name in rows:
                council = Council(seed=seed) if "council" in name else None
                calls = []
                if council is not None:
                    inner = council.advise
                    council.advise = lambda c, inner=inner, calls=calls: (
                        calls.append(1), inner(c))[1]
                loop = Loop(task=task, tuner=hj.pbt(task.space), population=8,
                            advisor=council, backoff=Backoff(plateau=3, dormant=1000))
                hp = task.space.sample(jax.random.key(seed + 100), 8)
                result = loop.run(key=jax.random.key(seed), max_windows=args.windows,
                                  hparams=hp)
                rows[name].append(float(test(result.state)["score"]))
                if council is not None:
                    asked.append(len(calls))
        print(f"\n== {label}: hj.Loop, PBT population of 8, {args.windows} one-epoch windows, "
              f"seeds 0-{args.seeds - 1}; the council was asked {asked} times")
        for name, accs in rows.items():
            print(f"{name:<14} test acc {statistics.median(accs):.4f} "
                  f"[{min(accs):.4f}-{max(accs):.4f}]")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--windows", type=int, default=30)
    parser.add_argument("--part", choices=("all", "trials", "loop"), default="all")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    if args.part in ("all", "trials"):
        trial_level(args)
    if args.part in ("all", "loop"):
        loop_level(args)


if __name__ == "__main__":
    main()
