"""Population-based training on digits against one-after-another runs and Optuna.

Four benchmarks, each a ``--part``; every table puts the methods side by side and every
ratio is measured in the same run.

``throughput``: 32 members on digits, equal optimizer steps, compilation included.
  (a) the vmapped PBT population (:func:`hagfish_jax.demo.population_program`), all
  windows in one jitted ``lax.scan``; (b) the same 32 members (same initial
  hyperparameters) one after another, each one call of a single compiled ``lax.scan``
  program that takes its hyperparameters as arrays; (c) Optuna-style trials with the
  same 32 hyperparameter sets (enqueued, no pruning): each trial builds
  ``optax.adamw`` from the sampled Python floats (dropout and label smoothing are
  Python constants too) and jits a fresh train function. Targets: (b)/(a) >= 1.0 and
  (c)/(a) >= 10 in wall time. The table also gives the XLA compile seconds and, for
  (a) and (b), a warm re-run of the same work with the compiled programs. Repeats
  rebuild everything (fresh compiles) and alternate the order of the methods.

``budget``: every method gets the same number of optimizer steps (``members x windows
x steps per window``), on a normal variant (MLP (64,), full train split, 16 x 20
one-epoch windows of 16 steps = 5120 steps) and a harder one (the small CNN, 25% of the
train split, batch 32, 16 x 10 windows of 4 steps = 640 steps, where the default
hyperparameters fall clearly behind). The space is the digits task's five dynamic
hyperparameters (learning rate, weight decay, b1, dropout rate, label smoothing).
  * ``pbt``: a PBT population of ``members`` (``hj.pbt(task.space)``, defaults;
    ``--pbt-ready`` changes its ``ready``);
  * ``tpe rebuilt`` / ``tpe inject``: Optuna ``TPESampler`` + ``MedianPruner``
    (defaults), each trial trains up to ``windows`` windows and reports the
    validation accuracy after each; *rebuilt* builds the optimizer per trial as in
    (c) above, *inject* uses the digits task (``inject_hyperparams``, one compile);
  * ``random``: Optuna ``RandomSampler``, no pruner, inject wiring;
  * ``default``: ``members`` models with ``task.default_hparams`` and different
    initial weights, trained for ``windows`` windows each.
  Budget accounting: optimizer steps actually run are counted; Optuna keeps starting
  trials (pruned trials use fewer steps) until the budget is spent, and the trial
  running when it runs out stops there, so every method runs exactly the budget.
  Selection: every method evaluates every model after every window; the model
  (member or trial, at that window) with the best validation accuracy is selected
  (ties: the first one) and its test accuracy is reported. Test accuracy is recorded
  at every window for the anytime curves but never used for selection. Wall time
  counts everything from building the programs to the selected test accuracy,
  compilation included; "compiles" counts every XLA compilation in that span
  (``jax.monitoring``). Targets: PBT's median accuracy within 0.3 points of the best
  peer's or better, at <= 0.2x the wall time of ``tpe rebuilt``. Seeds alternate the
  order of the methods. Anytime curves (test
  accuracy of the validation-selected model vs optimizer steps spent, median over
  seeds with the range shaded) go to ``benchmarks/population_anytime*.png``.

``compiles``: a 100-generation PBT run dispatched generation by generation (one jitted
  call each) and in ``lax.scan`` chunks of 10: a trace counter inside the generation
  function and the XLA compile count show that only the initial programs compile.

``toy``: online linear regression where the curvature follows a triangle wave in
  time (1 to 100 and back), so the range of good SGD learning rates moves by a factor
  of 100 and back: a rate that is stable at the peak curvature (below about 0.02) lags
  the drifting target weights when the curvature is low, and a rate fast enough there
  diverges at the peak. A PBT population of 4 (initial learning rates
  1e-3, 1e-2, 1e-1, 1) against each of those 4 held fixed and a grid of 13 fixed
  rates. Target: excess error ``|w - w*|^2 <= 0.05`` (five times the noise variance)
  in at least 90% of the windows, for PBT's best member in each window.

Before any timing, every method runs once on a tiny configuration, so that one-off
costs of the process (eager ops compiled on first use) fall on none of them; the same
warm-up checks that both Optuna wirings give the same validation loss.

Run::

    python benchmarks/population.py --part all --seeds 5
    python benchmarks/population.py --part budget --variant hard --seeds 5
    python benchmarks/population.py --part all --quick      # small smoke configuration
    python benchmarks/population.py --part budget --methods pbt --pbt-ready 2   # PBT alone

Optuna and matplotlib are needed (``pip install 'hagfish-jax[bench,plot]'``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj
from hagfish_jax import demo
from hagfish_jax.tasks import digits

HERE = Path(__file__).resolve().parent

# -- measuring ---------------------------------------------------------------------------

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = {"count": 0, "seconds": 0.0, "installed": False}


def install_compile_counter() -> None:
    """Count every XLA compilation in this process (idempotent)."""
    if _compiles["installed"]:
        return

    def listener(event: str, duration: float, **_: Any) -> None:
        if event == _COMPILE_EVENT:
            _compiles["count"] += 1
            _compiles["seconds"] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    _compiles["installed"] = True


class Measure:
    """Wall time and XLA compilations (count and seconds) of a ``with`` block."""

    def __enter__(self) -> Measure:
        install_compile_counter()
        self._c0, self._s0 = _compiles["count"], _compiles["seconds"]
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.compiles = _compiles["count"] - self._c0
        self.compile_s = _compiles["seconds"] - self._s0


class Selection:
    """The validation-selected model of a run, and its anytime curve.

    ``add(steps, val, test)`` is called after every evaluation, in the order the
    compute was spent; a strictly better finite validation score replaces the selected
    model. ``curve`` holds ``(steps spent, test accuracy of the selected model)``.
    """

    def __init__(self) -> None:
        self.val = -math.inf
        self.test = math.nan
        self.steps = 0
        self.curve: list[tuple[int, float]] = []

    def add(self, steps: int, val: float, test: float) -> None:
        self.steps = int(steps)
        if math.isfinite(val) and val > self.val:
            self.val, self.test = float(val), float(test)
        self.curve.append((self.steps, self.test))


class Result(NamedTuple):
    test: float  # test accuracy of the validation-selected model
    val: float
    steps: int  # optimizer steps run (all members / trials)
    wall: float
    compiles: int
    compile_s: float
    curve: list  # [(steps, test of the selected model)]
    trials: int  # trials started (Optuna) or members
    warm: float = math.nan  # the same work again with the compiled programs (throughput)


# -- digits building blocks ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
    """A digits configuration: data, model and the equal budget of one method."""

    name: str
    model: str = "mlp"
    train_fraction: float = 1.0
    batch_size: int = 64
    steps_per_window: int | None = None  # None: one epoch
    hidden: tuple[int, ...] = (64,)
    members: int = 16
    windows: int = 20


def make_task(setup: Setup, seed: int) -> digits.DigitsTask:
    """The digits task of ``setup`` on split ``seed``; ``evaluate`` also returns ``test``.

    The test accuracy rides along so the anytime curves need no second pass; it is
    never used for selection or by a tuner.
    """
    data = digits.load_digits_split(seed, train_fraction=setup.train_fraction)
    task = digits.make_task(
        data,
        model=setup.model,
        batch_size=setup.batch_size,
        steps_per_window=setup.steps_per_window,
        hidden=setup.hidden,
    )
    evaluate = task.evaluate

    def evaluate_with_test(state):
        return {**evaluate(state), "test": task.test_accuracy(state)}

    return task._replace(evaluate=evaluate_with_test)


class _Params(NamedTuple):  # what task.evaluate reads from a train state
    params: Any


def _suggest(trial, space: hj.Space) -> dict[str, float]:
    return {
        name: trial.suggest_float(name, dim.low, dim.high, log=isinstance(dim, hj.LogUniform))
        for name, dim in space.dims.items()
    }


def inject_programs(task: digits.DigitsTask, seed: int):
    """The ``inject_hyperparams`` wiring: init, train and evaluate, each compiled once.

    Hyperparameters are float32 arrays in the train state; window ``i`` uses the key
    ``fold_in(key(seed), i)`` so both wirings see the same batches and dropout masks.
    """
    base = jax.random.key(seed)

    @jax.jit
    def init(i, hp):
        return task.init(jax.random.fold_in(base, i), hp)

    @jax.jit
    def train(state, i):
        return task.train_window(state, jax.random.fold_in(base, i))[0]

    def start(i: int, hp: dict[str, float]):
        return init(i, {k: np.float32(v) for k, v in hp.items()})

    return start, (lambda hp: train), jax.jit(task.evaluate)


def rebuilt_programs(task: digits.DigitsTask, setup: Setup, seed: int):
    """The rebuilt-per-trial wiring, as a typical Optuna user writes it.

    ``make_train(hp)`` builds ``optax.adamw`` from Python floats, with dropout rate and
    label smoothing as Python constants, and returns a freshly jitted train window:
    one XLA compile per trial. Initialisation and evaluation do not depend on the
    hyperparameters, so they are jitted once and shared (the cheapest honest version
    of this wiring). The train window is the digits task's, step for step.
    """
    data = task.data
    if setup.model == "mlp":
        net = digits.MLP(hidden=setup.hidden)
    else:
        net = digits.CNN(hidden=setup.hidden[0] if setup.hidden else 64)
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    n_train = len(data.y_train)
    per_epoch = n_train // setup.batch_size
    steps = task.steps_per_window
    epochs = -(-steps // per_epoch)
    base = jax.random.key(seed)
    # adamw's state holds no hyperparameter values: one shared init serves every trial.
    reference = optax.adamw(1e-3)

    @jax.jit
    def init(i):
        params = net.init(
            jax.random.fold_in(base, i), x_train[:1], dropout_rate=0.0, deterministic=True
        )
        return params, reference.init(params)

    evaluate = jax.jit(lambda state: task.evaluate(_Params(state[0])))

    def make_train(hp: dict[str, float]):
        tx = optax.adamw(
            float(hp["learning_rate"]), b1=float(hp["b1"]), weight_decay=float(hp["weight_decay"])
        )
        rate, smoothing = float(hp["dropout_rate"]), float(hp["label_smoothing"])

        def loss_fn(params, x, y, key):
            logits = net.apply(
                params, x, dropout_rate=rate, deterministic=False, rngs={"dropout": key}
            )
            labels = optax.smooth_labels(jax.nn.one_hot(y, 10), smoothing)
            return optax.softmax_cross_entropy(logits, labels).mean()

        def train_window(state, i):
            shuffle_key, dropout_key = jax.random.split(jax.random.fold_in(base, i))
            perms = jax.vmap(lambda k: jax.random.permutation(k, n_train))(
                jax.random.split(shuffle_key, epochs)
            )
            batches = perms[:, : per_epoch * setup.batch_size]
            batches = batches.reshape(-1, setup.batch_size)[:steps]

            def step(state, inputs):
                (params, opt_state), (idx, k) = state, inputs
                grads = jax.grad(loss_fn)(params, x_train[idx], y_train[idx], k)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), None

            keys = jax.random.split(dropout_key, steps)
            return jax.lax.scan(step, state, (batches, keys))[0]

        return jax.jit(train_window)

    return (lambda i, hp: init(i)), make_train, evaluate


def run_optuna(
    task: digits.DigitsTask,
    setup: Setup,
    seed: int,
    sampler: str,
    wiring: str,
    budget: int | None = None,
    enqueue: Sequence[dict[str, float]] = (),
    pruner: bool = True,
) -> Result:
    """An Optuna study on ``task``: trials of up to ``setup.windows`` windows each.

    Stops when ``budget`` optimizer steps are spent (the running trial stops there),
    or after the enqueued trials when ``budget`` is None.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spw = task.steps_per_window
    sel = Selection()
    with Measure() as m:
        if wiring == "inject":
            start, make_train, evaluate = inject_programs(task, seed)
        elif wiring == "rebuilt":
            start, make_train, evaluate = rebuilt_programs(task, setup, seed)
        else:
            raise ValueError(f"wiring must be 'inject' or 'rebuilt', got {wiring!r}")
        samplers = {
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        }
        study = optuna.create_study(
            direction="maximize",
            sampler=samplers[sampler](),
            pruner=optuna.pruners.MedianPruner() if pruner else optuna.pruners.NopPruner(),
        )
        for hp in enqueue:
            study.enqueue_trial(hp)
        used = [0]

        def objective(trial):
            hp = _suggest(trial, task.space)
            state = start(trial.number, hp)
            train = make_train(hp)
            best = -math.inf
            for w in range(setup.windows):
                if budget is not None and used[0] >= budget:
                    break
                state = train(state, trial.number * setup.windows + w)
                used[0] += spw
                metrics = evaluate(state)
                val, test = float(metrics["score"]), float(metrics["test"])
                sel.add(used[0], val, test)
                best = max(best, val)
                trial.report(val, w)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return best

        def stop(study, _trial):
            if budget is not None and used[0] >= budget:
                study.stop()

        study.optimize(objective, n_trials=None if budget else len(enqueue), callbacks=[stop])
    return Result(
        sel.test, sel.val, used[0], m.wall, m.compiles, m.compile_s, sel.curve, len(study.trials)
    )


def run_population(
    task: digits.DigitsTask,
    setup: Setup,
    seed: int,
    tuner: hj.Tuner,
    hparams: Callable[[jax.Array, int], dict] | None = None,
    members: int | None = None,
    warm: bool = False,
) -> Result:
    """A vmapped population (``demo.population_program``), all windows in one scan.

    ``hparams(key, n)`` gives the initial ``(n,)`` hyperparameters (default: sampled
    from the task's space); the selected model is the best member at any window.
    """
    n = members or setup.members
    windows, spw = setup.windows, task.steps_per_window
    hparams = hparams or (lambda key, n: task.space.sample(key, n))
    sel = Selection()
    with Measure() as m:
        init, generation = demo.population_program(task, tuner, n)

        @jax.jit
        def start(seed):
            k_hp, k_run = jax.random.split(jax.random.key(seed))
            return init(k_run, hparams(k_hp, n))

        run = jax.jit(lambda carry: jax.lax.scan(generation, carry, None, length=windows))
        carry, rows = run(start(seed))
        rows = jax.device_get({"score": rows["score"], "test": rows["test"]})
        for g in range(windows):
            score = np.where(np.isfinite(rows["score"][g]), rows["score"][g], -np.inf)
            i = int(np.argmax(score))
            sel.add((g + 1) * n * spw, rows["score"][g, i], rows["test"][g, i])
        best_score = float(carry.best.score)
    # the program's own on-device snapshot agrees with the host-side selection
    assert best_score == np.float32(sel.val), (best_score, sel.val)
    warm_s = math.nan
    if warm:
        t0 = time.perf_counter()
        jax.device_get(run(start(seed))[1]["score"])
        warm_s = time.perf_counter() - t0
    return Result(
        sel.test, sel.val, n * windows * spw, m.wall, m.compiles, m.compile_s, sel.curve, n, warm_s
    )


def run_sequential(
    task: digits.DigitsTask, setup: Setup, seed: int, hp_list: Sequence[dict[str, float]]
) -> Result:
    """The members one after another: one compiled ``lax.scan`` program, one call each."""
    windows, spw = setup.windows, task.steps_per_window
    sel = Selection()
    with Measure() as m:

        @jax.jit
        def member_run(i, hp):
            key = jax.random.fold_in(jax.random.key(seed), i)
            k_init, k_run = jax.random.split(key)

            def body(state, k):
                state, _ = task.train_window(state, k)
                metrics = task.evaluate(state)
                return state, (metrics["score"], metrics["test"])

            state = task.init(k_init, hp)
            return jax.lax.scan(body, state, jax.random.split(k_run, windows))[1]

        hps = [{k: np.float32(v) for k, v in hp.items()} for hp in hp_list]
        used = 0
        for i, hp in enumerate(hps):
            scores, tests = jax.device_get(member_run(i, hp))
            for w in range(windows):
                used += spw
                sel.add(used, scores[w], tests[w])
    t0 = time.perf_counter()  # again, compiled: the run time alone
    for i, hp in enumerate(hps):
        jax.device_get(member_run(i, hp))
    warm_s = time.perf_counter() - t0
    return Result(
        sel.test, sel.val, used, m.wall, m.compiles, m.compile_s, sel.curve, len(hp_list), warm_s
    )


def sampled_hparams(space: hj.Space, seed: int, n: int) -> list[dict[str, float]]:
    """``n`` hyperparameter sets drawn from ``space`` as Python floats."""
    hp = jax.device_get(space.sample(jax.random.key(seed), n))
    return [{k: float(v[i]) for k, v in hp.items()} for i in range(n)]


# -- printing ------------------------------------------------------------------------------


def _med_range(xs: Sequence[float], fmt: str = "{:.4f}") -> str:
    xs = list(xs)
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]"


def _ok(flag: bool) -> str:
    return "ok" if flag else "MISSED"


# -- part 1: throughput --------------------------------------------------------------------


def part_throughput(args) -> dict:
    setup = Setup("throughput", members=args.tp_members, windows=args.tp_windows)
    task = make_task(setup, 0)
    hps = sampled_hparams(task.space, 0, setup.members)

    def hparams_from_list(key, n):
        del key
        return {k: jnp.asarray([hp[k] for hp in hps], jnp.float32) for k in hps[0]}

    cases = {
        "(a) vmapped PBT population": lambda: run_population(
            task, setup, 0, hj.pbt(task.space), hparams_from_list, warm=True
        ),
        "(b) one after another, one compiled scan": lambda: run_sequential(task, setup, 0, hps),
        "(c) Optuna trials, optimizer rebuilt + jit per trial": lambda: run_optuna(
            task, setup, 0, "random", "rebuilt", enqueue=hps, pruner=False
        ),
    }
    results = {name: [] for name in cases}
    for r in range(args.repeats):
        for name in list(cases) if r % 2 == 0 else list(cases)[::-1]:
            results[name].append(cases[name]())
    base = results["(a) vmapped PBT population"]
    steps = base[0].steps
    print(
        f"\n== throughput: {setup.members} members x {setup.windows} windows x "
        f"{task.steps_per_window} steps = {steps} optimizer steps each, compile included, "
        f"repeats={args.repeats} (median over repeats)"
    )
    print(
        "wall s: compile included; XLA compile s: XLA's share of it (tracing and lowering are "
        "extra); warm s: the same work again with the compiled programs"
    )
    print(
        f"{'method':<54} {'wall s':>7} {'XLA compile s':>13} {'compiles':>8} {'steps/s':>8} "
        f"{'x (a) time':>10} {'target':>10} {'warm s':>7} {'x (a) warm':>10}"
    )
    targets = {"(b)": 1.0, "(c)": 10.0}
    out = {}
    for name, rs in results.items():
        assert all(r.steps == steps for r in rs), (name, [r.steps for r in rs])
        wall = statistics.median(r.wall for r in rs)
        ratio = statistics.median(r.wall / b.wall for r, b in zip(rs, base))
        target = targets.get(name[:3])
        mark = f">={target:g} {_ok(ratio >= target)}" if target else ""
        warm = statistics.median(r.warm for r in rs)
        warm_ratio = statistics.median(r.warm / b.warm for r, b in zip(rs, base))
        warm_cols = "" if math.isnan(warm) else f"{warm:>7.3f} {warm_ratio:>10.2f}"
        print(
            f"{name:<54} {wall:>7.2f} {statistics.median(r.compile_s for r in rs):>13.2f} "
            f"{statistics.median(r.compiles for r in rs):>8.0f} {steps / wall:>8.0f} "
            f"{ratio:>10.2f} {mark:>10} {warm_cols}"
        )
        out[name] = {"wall": wall, "ratio": ratio, "warm": warm}
    return out


# -- part 2: equal budget ------------------------------------------------------------------

VARIANTS = {
    "normal": Setup("normal: MLP (64,), full train split, 1-epoch windows"),
    "hard": Setup(
        "hard: small CNN, 25% of the train split, batch 32, 4-step windows",
        model="cnn",
        train_fraction=0.25,
        batch_size=32,
        steps_per_window=4,
        windows=10,
    ),
}

METHODS = ("pbt", "tpe rebuilt", "tpe inject", "random", "default")


def run_method(method: str, setup: Setup, seed: int, pbt_ready: int = 1) -> Result:
    task = make_task(setup, seed)
    budget = setup.members * setup.windows * task.steps_per_window
    if method == "pbt":
        return run_population(task, setup, seed, hj.pbt(task.space, ready=pbt_ready))
    if method == "default":

        def default(key, n):
            del key
            return {k: jnp.full((n,), v, jnp.float32) for k, v in task.default_hparams.items()}

        return run_population(task, setup, seed, hj.fixed(), default)
    if method == "tpe rebuilt":
        return run_optuna(task, setup, seed, "tpe", "rebuilt", budget)
    if method == "tpe inject":
        return run_optuna(task, setup, seed, "tpe", "inject", budget)
    if method == "random":
        return run_optuna(task, setup, seed, "random", "inject", budget, pruner=False)
    raise ValueError(method)


def part_budget(args, variant: str) -> dict:
    setup = VARIANTS[variant]
    if args.quick:
        setup = dataclasses.replace(setup, members=4, windows=3)
    seeds = list(range(args.seeds))
    methods = args.methods
    results: dict[str, list[Result]] = {m: [] for m in methods}
    for seed in seeds:
        for method in methods if seed % 2 == 0 else methods[::-1]:
            results[method].append(run_method(method, setup, seed, args.pbt_ready))
    spw = make_task(setup, 0).steps_per_window
    budget = setup.members * setup.windows * spw
    print(
        f"\n== equal budget, {setup.name}: {setup.members} x {setup.windows} windows x "
        f"{spw} steps = {budget} optimizer steps per method; seeds {seeds}; "
        f"PBT ready={args.pbt_ready}"
    )
    print(
        "test acc = test accuracy of the validation-selected model, median [min-max] over "
        "seeds; wall and compiles: median [min-max]; x rebuilt = median of per-seed wall "
        "ratios to 'tpe rebuilt'"
    )
    print(
        f"{'method':<12} {'test acc':>24} {'val acc':>8} {'steps':>6} {'trials':>6} "
        f"{'wall s':>20} {'x rebuilt':>9} {'compiles':>12} {'XLA compile s':>13}"
    )
    rebuilt = results.get("tpe rebuilt")
    for method, rs in results.items():
        assert all(r.steps == budget for r in rs), (method, [r.steps for r in rs])
        if rebuilt is None:
            ratio_col = f"{'-':>9}"
        else:
            ratio_col = f"{statistics.median(r.wall / b.wall for r, b in zip(rs, rebuilt)):>9.3f}"
        print(
            f"{method:<12} {_med_range([r.test for r in rs]):>24} "
            f"{statistics.median(r.val for r in rs):>8.4f} {budget:>6} "
            f"{statistics.median(r.trials for r in rs):>6.0f} "
            f"{_med_range([r.wall for r in rs], '{:.2f}'):>20} {ratio_col} "
            f"{_med_range([r.compiles for r in rs], '{:.0f}'):>12} "
            f"{statistics.median(r.compile_s for r in rs):>13.2f}"
        )
    med = {m: statistics.median(r.test for r in rs) for m, rs in results.items()}
    if set(methods) != set(METHODS):  # a partial run: no targets, no plot
        return {"median": med}
    best_peer = max(v for m, v in med.items() if m != "pbt")
    gap = 100 * (med["pbt"] - best_peer)
    ratio = statistics.median(r.wall / b.wall for r, b in zip(results["pbt"], rebuilt))
    print(
        f"targets: PBT median test acc {100 * med['pbt']:.2f}% vs best peer "
        f"{100 * best_peer:.2f}%: {gap:+.2f} points (>= -0.3: {_ok(gap >= -0.3)}); "
        f"PBT wall / tpe rebuilt = {ratio:.3f} (<= 0.2: {_ok(ratio <= 0.2)})"
    )
    if args.plot:
        plot_anytime(results, setup, budget, HERE / f"population_anytime_{variant}.png")
    return {"median": med, "gap_points": gap, "wall_ratio": ratio}


def plot_anytime(results: dict[str, list[Result]], setup: Setup, budget: int, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, budget, 401)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, rs in results.items():
        ys = []
        for r in rs:
            steps = np.array([s for s, _ in r.curve], float)
            tests = np.array([t for _, t in r.curve], float)
            idx = np.searchsorted(steps, grid, side="right") - 1
            ys.append(np.where(idx >= 0, tests[np.maximum(idx, 0)], np.nan))
        ys = np.array(ys)
        with warnings.catch_warnings():  # all-NaN columns before the first evaluation
            warnings.simplefilter("ignore", RuntimeWarning)
            med, lo, hi = np.nanmedian(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
        (line,) = ax.step(grid, med, where="post", label=method)
        ax.fill_between(grid, lo, hi, step="post", alpha=0.15, color=line.get_color())
    ax.set_xlabel("optimizer steps spent (all members / trials)")
    ax.set_ylabel("test accuracy of the validation-selected model")
    ax.set_title(
        f"{setup.name}\nmedian over {len(next(iter(results.values())))} seeds, range shaded",
        fontsize=9,
    )
    finite = [r.test for rs in results.values() for r in rs]
    ax.set_ylim(max(0.0, min(finite) - 0.1), 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


# -- part 3: compilations over 100 generations -----------------------------------------------


def part_compiles(args) -> dict:
    setup = Setup("compiles", members=16, steps_per_window=args.compile_steps)
    task = make_task(setup, 0)
    n, generations = setup.members, args.generations
    init, generation = demo.population_program(task, hj.pbt(task.space), n)
    traces = {"init": 0, "generation": 0}

    def programs():  # fresh functions, so each wiring compiles its own
        def counted_init(seed):
            traces["init"] += 1
            k_hp, k_run = jax.random.split(jax.random.key(seed))
            return init(k_run, task.space.sample(k_hp, n))

        def counted_generation(carry):
            traces["generation"] += 1
            return generation(carry)

        def counted_chunk(carry):
            traces["generation"] += 1
            return jax.lax.scan(lambda c, _: generation(c), carry, None, length=10)

        return jax.jit(counted_init), jax.jit(counted_generation), jax.jit(counted_chunk)

    print(
        f"\n== compilations over a {generations}-generation PBT run ({n} members, "
        f"{task.steps_per_window} steps per window)"
    )
    print(
        f"{'wiring':<40} {'first call':>12} {'later calls':>12} {'traces':>7} "
        f"{'distinct hparams':>16} {'exploits':>8}"
    )
    out = {}
    for wiring in ("dispatched: one jitted call per gen", "scan: 10 chunks of 10 generations"):
        traces.update(init=0, generation=0)
        lrs = []
        parents = []
        start, step, chunk = programs()
        if wiring.startswith("dispatched"):
            with Measure() as first:
                carry = start(0)
                carry, row = step(carry)
            lrs.append(row["learning_rate"])
            parents.append(row["parent"])
            with Measure() as later:
                for _ in range(generations - 1):
                    carry, row = step(carry)
                    lrs.append(row["learning_rate"])
                    parents.append(row["parent"])
                jax.block_until_ready(carry)
        else:
            with Measure() as first:
                carry, rows = chunk(start(0))
            lrs.extend(rows["learning_rate"])
            parents.extend(rows["parent"])
            with Measure() as later:
                for _ in range(generations // 10 - 1):
                    carry, rows = chunk(carry)
                    lrs.extend(rows["learning_rate"])
                    parents.extend(rows["parent"])
                jax.block_until_ready(carry)
        lrs = np.asarray(jax.device_get(lrs)).reshape(-1, n)
        parents = np.asarray(jax.device_get(parents)).reshape(-1, n)
        distinct = len(np.unique(lrs))
        exploits = int(np.sum(parents != np.arange(n)))
        print(
            f"{wiring:<40} {first.compiles:>12} {later.compiles:>12} "
            f"{traces['init'] + traces['generation']:>7} {distinct:>16} {exploits:>8}"
        )
        out[wiring] = {"first": first.compiles, "later": later.compiles, "distinct": distinct}
    print(
        "first call: XLA compiles of the init and the generation program; later calls: "
        "compiles during the other generations (target 0); distinct hparams: distinct "
        "learning rates trained with, each a separate compile in the rebuilt wiring"
    )
    return out


# -- part 4: toy problem with a moving best learning rate ------------------------------------


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


def toy_program(toy: Toy, lrs: Sequence[float], tuner: hj.Tuner):
    """Online linear regression with a triangle-wave curvature; ``lrs`` members.

    Window ``t`` draws inputs ``x ~ N(0, s(t)^2 I)`` with ``s`` a triangle wave in log
    scale between 1 and ``scale_max``, so the curvature ``s^2`` goes from 1 to 100 and
    back and the largest stable SGD learning rate (about ``2/s^2``) from about 2 to
    0.02. The
    target weights ``w*`` take a random-walk step every window; labels carry noise of
    standard deviation ``noise * s``. Each member runs ``steps`` minibatch SGD steps per
    window; its excess error ``|w - w*|^2`` (the expected excess squared error divided
    by ``s^2``) is measured after the window, and ``-log10(error + noise^2)`` is the
    score PBT ranks.
    """
    n = len(lrs)
    windows = 2 * toy.half_period * toy.periods
    tx = optax.inject_hyperparams(optax.sgd, hyperparam_dtype=jnp.float32)(learning_rate=0.1)

    def scale(t):
        phase = jnp.mod(t, 2 * toy.half_period) / toy.half_period
        tri = jnp.where(phase < 1, phase, 2 - phase)
        return toy.scale_max**tri

    def init_member(lr):
        w = jnp.zeros(toy.dim)
        return hj.set_hparams({"w": w, "opt": tx.init(w)}, {"learning_rate": lr})

    def train_window(member, key, s, w_star):
        def step(member, k):
            kx, ke = jax.random.split(k)
            x = s * jax.random.normal(kx, (toy.batch, toy.dim))
            y = x @ w_star + toy.noise * s * jax.random.normal(ke, (toy.batch,))
            grad = jax.grad(lambda w: 0.5 * jnp.mean((x @ w - y) ** 2))(member["w"])
            updates, opt = tx.update(grad, member["opt"], member["w"])
            return {"w": optax.apply_updates(member["w"], updates), "opt": opt}, None

        return jax.lax.scan(step, member, jax.random.split(key, toy.steps))[0]

    def run(key):
        k_tuner, key = jax.random.split(key)
        lr = jnp.asarray(lrs, jnp.float32)
        members = jax.vmap(init_member)(lr)
        tuner_state = tuner.init(k_tuner, {"learning_rate": lr})

        def window(carry, t):
            members, tuner_state, w_star, key = carry
            key, k_drift, k_train = jax.random.split(key, 3)
            w_star = w_star + toy.drift * jax.random.normal(k_drift, (toy.dim,))
            in_force = hj.get_hparams(members)["learning_rate"]
            members = jax.vmap(train_window, (0, 0, None, None))(
                members, jax.random.split(k_train, n), scale(t), w_star
            )
            err = jnp.sum((members["w"] - w_star) ** 2, axis=1)
            err = jnp.where(jnp.isfinite(err), err, jnp.inf)
            proposal, tuner_state = tuner.update(
                tuner_state, hj.Observation(-jnp.log10(err + toy.noise**2))
            )
            members = hj.population.exploit(members, proposal.parents)
            members = hj.set_hparams(members, proposal.hparams)
            return (members, tuner_state, w_star, key), (err, in_force)

        carry = (members, tuner_state, jnp.zeros(toy.dim), key)
        return jax.lax.scan(window, carry, jnp.arange(windows))[1]

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


# -- main ------------------------------------------------------------------------------------


def warm_up() -> None:
    """Compile the few eager ops every method shares, so no method pays for them first."""
    setup = Setup("warm-up", members=2, windows=1, steps_per_window=2, hidden=(8,))
    task = make_task(setup, 0)
    for method in METHODS:
        run_method(method, setup, 0)
    # fairness: both Optuna wirings train the same model on the same batches
    hp = task.default_hparams
    start_i, make_i, eval_i = inject_programs(task, 0)
    start_r, make_r, eval_r = rebuilt_programs(task, setup, 0)
    a = eval_i(make_i(hp)(start_i(0, hp), 0))["val_loss"]
    b = eval_r(make_r(hp)(start_r(0, hp), 0))["val_loss"]
    np.testing.assert_allclose(float(a), float(b), rtol=1e-4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=("throughput", "budget", "compiles", "toy", "all"), default="all"
    )
    parser.add_argument("--variant", choices=("normal", "hard", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats")
    parser.add_argument("--quick", action="store_true", help="small smoke configuration")
    parser.add_argument(
        "--methods",
        type=lambda s: tuple(m.strip() for m in s.split(",")),
        default=METHODS,
        help=f"budget part: a comma-separated subset of {', '.join(METHODS)} (no targets)",
    )
    parser.add_argument("--pbt-ready", type=int, default=1, help="budget part: PBT's ready")
    parser.add_argument("--no-plot", dest="plot", action="store_false")
    args = parser.parse_args(argv)
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    args.tp_members, args.tp_windows = (4, 2) if args.quick else (32, 10)
    args.generations = 20 if args.quick else 100
    args.compile_steps = 4 if args.quick else None
    if args.quick:
        args.seeds, args.repeats = min(args.seeds, 2), 1

    install_compile_counter()
    start = time.perf_counter()
    print(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.device_count()}")
    warm_up()
    out = {}
    parts = ("throughput", "budget", "compiles", "toy") if args.part == "all" else (args.part,)
    for part in parts:
        t0 = time.perf_counter()
        if part == "throughput":
            out[part] = part_throughput(args)
        elif part == "budget":
            variants = ("normal", "hard") if args.variant == "both" else (args.variant,)
            out[part] = {v: part_budget(args, v) for v in variants}
        elif part == "compiles":
            out[part] = part_compiles(args)
        else:
            out[part] = part_toy(args)
        print(f"[{part}: {time.perf_counter() - t0:.1f} s]")
    print(f"total {time.perf_counter() - start:.1f} s")
    return out


if __name__ == "__main__":
    main()
