"""In-training tuning on digits: accuracy, compute, stress and suggestion cost.

Every method trains the flax MLP (or the small CNN) of ``hagfish_jax.tasks.digits``
for one "run" of ``--windows`` windows of one epoch (16 minibatches of 64), evaluates
on the validation split after every window and keeps the best-validation model; the
table shows that model's *test* accuracy (median and range over seeds) and the
compute in optimizer steps relative to one run.

Methods (hyperparameters not named are the task defaults: adamw, weight decay 1e-4,
b1 0.9, dropout 0.1):

* ``fixed``: adamw at the typical default learning rate 1e-3;
* ``cosine``: adamw with ``optax.cosine_decay_schedule`` from 1e-3 over the run;
* ``prodigy``, ``dog``, ``sf_adamw``: ``optax.contrib``'s learning-rate-free
  optimisers with their default settings (prodigy and schedule-free adamw get weight
  decay 1e-4; schedule-free adamw keeps its default lr 2.5e-3 and is evaluated at its
  averaged parameters);
* ``optuna_tpe``: offline Optuna (TPE, 3 random start-up trials) over the learning
  rate in [1e-4, 1e-1], as many trials as the grid, each a full run; best trial by
  validation; ``optuna_tpe@2`` is the same study cut after its first two trials;
* ``random``: random search, Optuna's ``RandomSampler`` over the same range, as many
  trials as the grid; ``random@2`` its first two trials;
* ``guard(bayes)``, ``guard(fd)``: one run, tuned inside the jitted scan by
  ``hj.guard(hj.bayes(space))`` / ``hj.guard(hj.finite_difference(space))`` through
  ``hj.program`` (train, evaluate, tune, keep best, roll back);
* ``grid``: the learning rates 1e-4 ... 1e-1 (half-decade steps), each a full run;
  the best by validation is the reference.

Every method selects by the library's rule, within a run (its windows) and across
trials: the best validation accuracy, ties to the lower validation loss.

Parts (``--part``): ``main`` (clean), ``diverge`` (every method that has a starting
learning rate starts at 1.0), ``noise`` (30% of the training labels replaced by random
labels from the halfway window on; validation and test stay clean), ``cost``
(seconds per ``bayes`` update against Optuna's GPSampler and TPESampler ``ask`` with
the same history; its code is in ``in_training_cost.py``).

    python benchmarks/in_training.py                   # everything, 5 seeds
    python benchmarks/in_training.py --quick           # smoke test
    python benchmarks/in_training.py --part main --models mlp --seeds 3
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj
from hagfish_jax.tasks import digits
from in_training_cost import run_cost

DEFAULT_LR = 1e-3
DIVERGENT_LR = 1.0
BATCH = 64
HIDDEN = (64,)
GRID = tuple(float(x) for x in np.logspace(-4, -1, 7))
NOISE = 0.3

#: The tuned space of the guarded tuners (wide enough to start at 1.0).
SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))
#: Guard settings, fixed for every seed, model and stress (those of
#: examples/bayes_in_training.py; not tuned on any split).
GUARD = dict(warmup=2, max_delta=0.5, smoothing=2, tolerance=0.05, patience=2, cooldown=2)
BAYES = dict(candidates=128)


def build_tuner(name: str, windows: int) -> hj.Tuner:
    if name == "guard(bayes)":
        inner = hj.bayes(SPACE, horizon=float(windows), **BAYES)
    elif name == "guard(fd)":
        inner = hj.finite_difference(SPACE)
    else:
        raise ValueError(name)
    return hj.guard(inner, space=SPACE, **GUARD)


def load(seed: int):
    """Arrays of the splits, and training labels with NOISE of them randomised."""
    data = digits.load_digits_split(seed)
    rng = np.random.default_rng(1000 + seed)
    y_noisy = data.y_train.copy()
    flip = rng.random(len(y_noisy)) < NOISE
    y_noisy[flip] = rng.integers(0, 10, int(flip.sum()))
    return tuple(jnp.asarray(a) for a in data), jnp.asarray(y_noisy, jnp.int32)


# -- baselines: a local loop with any optax optimizer ---------------------------------------


def make_net(model: str):
    return digits.MLP(hidden=HIDDEN) if model == "mlp" else digits.CNN(hidden=HIDDEN[0])


def make_tx(opt: str, lr, total_steps: int):
    if opt == "adamw":
        return optax.adamw(lr, b1=0.9, weight_decay=1e-4)
    if opt == "cosine":
        return optax.adamw(optax.cosine_decay_schedule(lr, total_steps), weight_decay=1e-4)
    if opt == "prodigy":
        return optax.contrib.prodigy(weight_decay=1e-4)
    if opt == "dog":
        return optax.contrib.dog()
    if opt == "sf_adamw":
        return optax.contrib.schedule_free_adamw(lr, weight_decay=1e-4)
    raise ValueError(opt)


@functools.partial(jax.jit, static_argnames=("model", "opt", "windows"))
def baseline_run(data, y_noisy, key, lr, switch, *, model, opt, windows):
    """One run; labels switch to ``y_noisy`` from window ``switch``. -> (test, val,
    val loss) of the window kept by the library's rule (``hj.program``'s
    ``carry.best``): the best validation accuracy, ties to the lower validation loss."""
    x_train, y_train, x_val, y_val, x_test, y_test = data
    net = make_net(model)
    n = y_train.shape[0]
    steps = n // BATCH
    tx = make_tx(opt, lr, windows * steps)
    rate = digits.default_hparams["dropout_rate"]
    init_key, key = jax.random.split(key)
    params = net.init(init_key, x_train[:1], dropout_rate=0.0, deterministic=True)
    opt_state = tx.init(params)

    def metrics(p, x, y):
        logits = net.apply(p, x, dropout_rate=0.0, deterministic=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return jnp.mean(jnp.argmax(logits, -1) == y), loss

    def window(carry, w):
        params, opt_state, key, best_val, best_loss, best_test = carry
        key, k_perm, k_drop = jax.random.split(key, 3)
        labels = jnp.where(w >= switch, y_noisy, y_train)
        batches = jax.random.permutation(k_perm, n)[: steps * BATCH].reshape(steps, BATCH)

        def step(c, inputs):
            p, s = c
            idx, k = inputs

            def loss_fn(p):
                logits = net.apply(
                    p, x_train[idx], dropout_rate=rate, deterministic=False, rngs={"dropout": k}
                )
                return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

            grads = jax.grad(loss_fn)(p)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, opt_state), _ = jax.lax.scan(
            step, (params, opt_state), (batches, jax.random.split(k_drop, steps))
        )
        p_eval = (
            optax.contrib.schedule_free_eval_params(opt_state, params)
            if opt == "sf_adamw"
            else params
        )
        (val, loss), (test, _) = metrics(p_eval, x_val, y_val), metrics(p_eval, x_test, y_test)
        loss = jnp.where(jnp.isfinite(loss), loss, jnp.inf)
        # the library's rule (hj.program's best): a better score, or an equal one with a
        # lower validation loss
        better = (val > best_val) | ((val == best_val) & (loss < best_loss))
        best_test = jnp.where(better, test, best_test)
        best_val = jnp.where(better, val, best_val)
        best_loss = jnp.where(better, loss, best_loss)
        return (params, opt_state, key, best_val, best_loss, best_test), None

    inf = jnp.float32(jnp.inf)
    carry = (params, opt_state, key, -inf, inf, jnp.float32(0.0))
    carry, _ = jax.lax.scan(window, carry, jnp.arange(windows))
    return carry[5], carry[3], carry[4]


@functools.partial(jax.jit, static_argnames=("model", "opt", "windows"))
def baseline_grid(data, y_noisy, key, lrs, switch, *, model, opt, windows):
    """``baseline_run`` for every learning rate in ``lrs`` (vmapped)."""
    run = functools.partial(baseline_run.__wrapped__, model=model, opt=opt, windows=windows)
    return jax.vmap(run, in_axes=(None, None, None, 0, None))(data, y_noisy, key, lrs, switch)


# -- guarded in-training tuners: the library's tuned window (hj.program) ------------------


@functools.partial(jax.jit, static_argnames=("model", "tuner_name", "windows", "switch"))
def tuned_run(data, y_noisy, key, lr0, *, model, tuner_name, windows, switch):
    """One tuned run; the windows from ``switch`` on train on ``y_noisy``.

    Both programs are ``hj.program.build`` of the same tuner on the clean and the noisy
    task (same shapes, so they share the carry): train, evaluate, tune, keep the best,
    roll back.
    """
    clean = digits.DigitsData(*data)
    noisy = clean._replace(y_train=y_noisy)
    task, noisy_task = (
        digits.make_task(d, model=model, batch_size=BATCH, hidden=HIDDEN) for d in (clean, noisy)
    )
    tuner = build_tuner(tuner_name, windows)
    program, noisy_program = hj.program.build(task, tuner), hj.program.build(noisy_task, tuner)
    carry = program.init(key, {"learning_rate": lr0})
    carry, rows = hj.program.scan(program, carry, switch)
    if switch < windows:
        carry, rows2 = hj.program.scan(noisy_program, carry, windows - switch)
        rows = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), rows, rows2)
    best = carry.best  # the best-validation window's state and score
    test = task.test_accuracy(best.state)
    return test, best.score, jnp.sum(rows["rollback"]), rows["learning_rate"][-1]


# -- one scenario ------------------------------------------------------------------------


def optuna_study(data, y_noisy, key, switch, model, windows, trials, seed, sampler="tpe"):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    tests = []

    def objective(trial):
        lr = trial.suggest_float("learning_rate", GRID[0], GRID[-1], log=True)
        test, val, loss = baseline_run(
            data, y_noisy, key, jnp.float32(lr), switch, model=model, opt="adamw", windows=windows
        )
        tests.append(float(test))
        losses.append(float(loss))
        return float(val)

    losses: list[float] = []
    study.optimize(objective, n_trials=trials)
    vals = [t.value for t in study.trials]
    best, best2 = _pick(vals, losses), _pick(vals[:2], losses[:2])
    return tests[best], tests[best2]


def _pick(vals, losses) -> int:
    """The best validation score, ties to the lower validation loss (the library's rule)."""
    return min(range(len(vals)), key=lambda i: (-vals[i], losses[i]))


def scenario(part: str, model: str, seed: int, windows: int):
    data, y_noisy = load(seed)
    key = jax.random.key(seed)
    switch = windows // 2 if part == "noise" else windows
    start = DIVERGENT_LR if part == "diverge" else DEFAULT_LR
    sw = jnp.int32(switch)
    out: dict[str, float] = {}
    extra: dict[str, float] = {}
    for opt, name in [("adamw", "fixed"), ("cosine", "cosine")]:
        test, _, _ = baseline_run(
            data, y_noisy, key, jnp.float32(start), sw, model=model, opt=opt, windows=windows
        )
        out[name] = float(test)
    for opt in ("prodigy", "dog", "sf_adamw"):
        lr = DIVERGENT_LR if (part == "diverge" and opt == "sf_adamw") else 2.5e-3
        test, _, _ = baseline_run(
            data, y_noisy, key, jnp.float32(lr), sw, model=model, opt=opt, windows=windows
        )
        out[opt] = float(test)
    out["optuna_tpe"], out["optuna_tpe@2"] = optuna_study(
        data, y_noisy, key, sw, model, windows, len(GRID), seed
    )
    out["random"], out["random@2"] = optuna_study(
        data, y_noisy, key, sw, model, windows, len(GRID), seed, sampler="random"
    )
    for name in ("guard(bayes)", "guard(fd)"):
        test, _, rollbacks, lr_end = tuned_run(
            data,
            y_noisy,
            key,
            jnp.float32(start),
            model=model,
            tuner_name=name,
            windows=windows,
            switch=switch,
        )
        out[name] = float(test)
        extra[name + " rollbacks"] = float(rollbacks)
        extra[name + " final lr"] = float(lr_end)
    tests, vals, losses = baseline_grid(
        data,
        y_noisy,
        key,
        jnp.asarray(GRID, jnp.float32),
        sw,
        model=model,
        opt="adamw",
        windows=windows,
    )
    best = _pick(np.asarray(vals).tolist(), np.asarray(losses).tolist())
    out["grid"] = float(tests[best])
    extra["grid best lr"] = GRID[best]
    return out, extra


COMPUTE = {
    "fixed": 1.0,
    "cosine": 1.0,
    "prodigy": 1.0,
    "dog": 1.0,
    "sf_adamw": 1.0,
    "optuna_tpe": float(len(GRID)),
    "optuna_tpe@2": 2.0,
    "random": float(len(GRID)),
    "random@2": 2.0,
    "guard(bayes)": 1.0,
    "guard(fd)": 1.0,
    "grid": float(len(GRID)),
}

STARTS = {
    "main": "fixed/cosine/guarded start at lr 1e-3",
    "diverge": "fixed/cosine/sf_adamw/guarded start at lr 1.0; others as in main",
    "noise": "30% random training labels from the halfway window on",
}


def fmt(values, scale=100.0):
    med = statistics.median(values)
    return f"{scale * med:6.2f} ({scale * min(values):6.2f}-{scale * max(values):6.2f})"


def run_part(part: str, model: str, seeds: list[int], windows: int) -> None:
    t0 = time.perf_counter()
    results, extras = [], []
    for seed in seeds:
        out, extra = scenario(part, model, seed, windows)
        results.append(out)
        extras.append(extra)
    names = list(results[0])
    print(
        f"\n[{part}] model={model} windows={windows} seeds={seeds} ({STARTS[part]}); "
        f"{time.perf_counter() - t0:.0f}s"
    )
    print(f"{'method':<14} {'test acc % median (range)':>27} {'compute':>8} {'vs grid':>8}")
    grid = [r["grid"] for r in results]
    for name in names:
        vals = [r[name] for r in results]
        gap = statistics.median([100 * (v - g) for v, g in zip(vals, grid)])
        print(f"{name:<14} {fmt(vals):>27} {COMPUTE[name]:>7.1f}x {gap:>+8.2f}")
    for key in extras[0]:
        vals = [e[key] for e in extras]
        print(f"  {key:<24} per seed: " + " ".join(f"{v:.3g}" for v in vals))
    ref = [r["grid"] for r in results]
    gb = [r["guard(bayes)"] for r in results]
    if part == "main":
        gap = 100 * (statistics.median(ref) - statistics.median(gb))
        ok = gap <= 0.5
        print(
            f"target guard(bayes) within 0.5 points of grid at <=1.5x compute: gap of medians "
            f"{gap:+.2f} points at 1.0x ({'met' if ok else 'MISSED'})"
        )
    else:
        for name in ("guard(bayes)", "guard(fd)"):
            ratio = statistics.median(r[name] for r in results) / statistics.median(ref)
            worst = min(r[name] / r["grid"] for r in results)
            ok = ratio >= 0.95
            print(
                f"target {name} >= 95% of grid under the same stress: median/median "
                f"{100 * ratio:.1f}% (worst seed {100 * worst:.1f}%) ({'met' if ok else 'MISSED'})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["main", "diverge", "noise", "cost"])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 8 windows, small cost")
    args = parser.parse_args()
    seeds = list(range(2 if args.quick else args.seeds))
    windows = 8 if args.quick else args.windows
    print(
        f"backend={jax.default_backend()} jax={jax.__version__} grid={len(GRID)} lrs "
        f"{GRID[0]:.0e}..{GRID[-1]:.0e} guard={GUARD} bayes={BAYES} space=lr in [1e-4, 1]"
    )
    for part in args.part:
        if part == "cost":
            if args.quick:
                run_cost([16], [1], 3)
            else:
                run_cost([64, 256], [1, 3], 5)
            continue
        for model in args.models:
            run_part(part, model, seeds, windows)


if __name__ == "__main__":
    main()
