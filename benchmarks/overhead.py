"""Overhead of hagfish's tuning machinery on the digits MLP.

Two programs train the same flax MLP on the same minibatches and evaluate after
every window; the only difference is the tuning machinery:

  (a) plain ``optax.adamw`` with constant hyperparameters baked into the program
      (dropout rate and label smoothing are Python constants too);
  (b) ``hagfish_jax.tasks.digits.make_task``: ``inject_hyperparams(adamw)`` plus
      dropout / label smoothing read from the state, and after every window
      ``hj.guard(hj.finite_difference(...))`` updates and ``hj.set_hparams`` writes
      the proposal into the state.

Each is timed (i) as one jitted ``lax.scan`` over all windows and (ii) dispatched
window by window from Python: one jitted call per window (in (b) it trains,
evaluates, updates the tuner and writes the proposal with set_hparams, the wiring
the quick start recommends), and a ``block_until_ready`` host sync at the end of
every window. Both return every evaluation metric, so neither can drop work the
other does. Compilation is excluded (warm-up first); repeats interleave all cases
(alternating their order). The table shows median milliseconds per window, the
extra microseconds per window, and the median (and range) of the per-repeat ratios
b/a, each b timed next to its a.

    python benchmarks/overhead.py --windows 50 --repeats 7 [--breakdown]

``--breakdown`` adds variants that isolate each piece: in scan, injected
hyperparameters only (no tuner), injected plus a set_hparams write per window, and
the guard update alone; dispatched, the tuner as a second jitted call per window
(its state donated), and the train state passed through that second call.
``--steps-per-window`` changes the window length (default: one epoch of 16
minibatches).
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


def plain_task(data, batch_size, steps, hidden):
    """(a): the digits task of ``make_task`` with every hyperparameter a constant."""
    d = digits.default_hparams
    net = digits.MLP(hidden=hidden)
    tx = optax.adamw(d["learning_rate"], b1=d["b1"], weight_decay=d["weight_decay"])
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_val, y_val = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    n_train = len(data.y_train)
    per_epoch = n_train // batch_size
    epochs = -(-steps // per_epoch)

    def init(key):
        params = net.init(key, x_train[:1], dropout_rate=0.0, deterministic=True)
        return params, tx.init(params)

    def loss_fn(params, x, y, key):
        logits = net.apply(
            params, x, dropout_rate=d["dropout_rate"], deterministic=False, rngs={"dropout": key}
        )
        labels = optax.smooth_labels(jax.nn.one_hot(y, 10), d["label_smoothing"])
        return optax.softmax_cross_entropy(logits, labels).mean(), logits

    def train_window(state, key):
        shuffle_key, dropout_key = jax.random.split(key)
        perms = jax.vmap(lambda k: jax.random.permutation(k, n_train))(
            jax.random.split(shuffle_key, epochs)
        )
        batches = perms[:, : per_epoch * batch_size].reshape(-1, batch_size)[:steps]

        def step(state, inputs):
            (params, opt_state), (idx, k) = state, inputs
            (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, x_train[idx], y_train[idx], k
            )
            updates, opt_state = tx.update(grads, opt_state, params)
            acc = jnp.mean(jnp.argmax(logits, -1) == y_train[idx])
            return (optax.apply_updates(params, updates), opt_state), (loss, acc)

        state, (losses, accs) = jax.lax.scan(
            step, state, (batches, jax.random.split(dropout_key, steps))
        )
        return state, {"loss": losses.mean(), "accuracy": accs.mean()}

    def metrics(params, x, y):
        logits = net.apply(params, x, dropout_rate=0.0, deterministic=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return jnp.mean(jnp.argmax(logits, -1) == y), loss

    def evaluate(state):
        val_acc, val_loss = metrics(state[0], x_val, y_val)
        train_acc, train_loss = metrics(state[0], x_train, y_train)
        return {
            "score": val_acc,
            "val_loss": val_loss,
            "train_score": train_acc,
            "train_loss": train_loss,
        }

    return init, train_window, evaluate


def build(args):
    data = digits.load_digits_split(0)
    task = digits.make_task(data, hidden=args.hidden, steps_per_window=args.steps_per_window)
    a_init, a_window, a_evaluate = plain_task(
        data, task.batch_size, task.steps_per_window, args.hidden
    )
    space = task.space
    tuner = hj.guard(
        hj.finite_difference(space.subspace(["learning_rate", "dropout_rate"])), space=space
    )
    key = jax.random.key(0)
    a_state = jax.jit(a_init)(key)
    b_state = jax.jit(task.init)(key, task.default_hparams)
    t_state = jax.jit(tuner.init)(key, task.default_hparams)

    # Fairness check: same weights, same batches, same dropout masks -> same numbers.
    wk = jax.random.key(1)
    la = jax.jit(a_window)(a_state, wk)[1]["loss"]
    lb = jax.jit(task.train_window)(b_state, wk)[1]["loss"]
    np.testing.assert_allclose(float(la), float(lb), rtol=1e-5)

    # Both programs return every evaluation metric (val and train accuracy and loss)
    # so XLA cannot drop the train-set evaluation from one of them: the tuner reads
    # train_score, and a plain run that discarded it would skip that forward pass.
    def a_body(state, key):
        state, m = a_window(state, key)
        return state, {**m, **a_evaluate(state)}

    def b_body(carry, key):
        state, ts = carry
        state, m = task.train_window(state, key)
        ev = task.evaluate(state)
        proposal, ts = tuner.update(ts, hj.Observation(ev["score"], ev["train_score"]))
        return (hj.set_hparams(state, proposal.hparams), ts), {**m, **ev}

    def inject_body(state, key):  # breakdown: injected hyperparameters, no tuner
        state, m = task.train_window(state, key)
        return state, {**m, **task.evaluate(state)}

    def inject_write_body(state, key):  # breakdown: plus one set_hparams write per window
        state, m = task.train_window(state, key)
        ev = task.evaluate(state)
        # A write that depends on the score, so XLA cannot hoist or drop it.
        hp = {
            k: v * (1.0 + 0.0 * ev["score"]) for k, v in hj.get_hparams(state).items() if k in space
        }
        return hj.set_hparams(state, hp), {**m, **ev}

    def guard_body(ts, score):  # breakdown: the guard update alone, fed made-up scores
        proposal, ts = tuner.update(ts, hj.Observation(score, score))
        return ts, proposal.hparams["learning_rate"]

    def scanned(body):
        return jax.jit(lambda carry, keys: jax.lax.scan(body, carry, keys))

    # (ii) dispatched: one jitted window call per window (+ one jitted tuner call for b).
    a_step = jax.jit(a_body)

    @jax.jit
    def b_step(state, hparams, key):
        state = hj.set_hparams(state, hparams)  # the last proposal, written inside the call
        return inject_body(state, key)

    # The tuner state is donated: its buffers are reused in place (saves ~10 us a call).
    @functools.partial(jax.jit, donate_argnums=0)
    def b_tune(ts, metrics):
        proposal, ts = tuner.update(ts, hj.Observation(metrics["score"], metrics["train_score"]))
        return proposal.hparams, ts

    def a_loop(state, keys):
        for k in keys:
            state, metrics = a_step(state, k)
            metrics["score"].block_until_ready()  # host sync: the window is done
        return state

    def b_loop(carry, keys):
        state, ts = carry
        ts = jax.tree.map(jnp.copy, ts)  # b_tune donates it; once per run, not per window
        hparams = ts.applied
        for k in keys:
            state, metrics = b_step(state, hparams, k)
            hparams, ts = b_tune(ts, metrics)
            hparams["learning_rate"].block_until_ready()  # host sync: window and tuner done
        return state

    @functools.partial(jax.jit, donate_argnums=1)
    def b_tune_state(state, ts, metrics):  # breakdown: the train state through the tuner call
        proposal, ts = tuner.update(ts, hj.Observation(metrics["score"], metrics["train_score"]))
        return hj.set_hparams(state, proposal.hparams), ts

    inject_step = jax.jit(inject_body)

    def b_loop_state(carry, keys):
        state, ts = carry
        ts = jax.tree.map(jnp.copy, ts)
        for k in keys:
            state, metrics = inject_step(state, k)
            state, ts = b_tune_state(state, ts, metrics)
            ts.window.block_until_ready()
        return state

    b_fused = jax.jit(b_body)  # (b) dispatched: train, evaluate, tune, write in one call

    def b_loop_fused(carry, keys):
        for k in keys:
            carry, metrics = b_fused(carry, k)
            metrics["score"].block_until_ready()
        return carry

    keys = jax.random.split(jax.random.key(2), args.windows)
    key_list = list(keys)  # split once, outside the timed loops
    scores = jnp.linspace(0.5, 0.9, args.windows, dtype=jnp.float32)
    # Every jitted program is built once here; a case is a call with fixed inputs.
    scan_a, scan_b = scanned(a_body), scanned(b_body)
    cases = {
        "scan a": lambda: scan_a(a_state, keys),
        "scan b": lambda: scan_b((b_state, t_state), keys),
        "dispatch a": lambda: a_loop(a_state, key_list),
        "dispatch b": lambda: b_loop_fused((b_state, t_state), key_list),
    }
    if args.breakdown:
        scan_inject, scan_write = scanned(inject_body), scanned(inject_write_body)
        scan_guard = scanned(guard_body)
        cases["scan inject"] = lambda: scan_inject(b_state, keys)
        cases["scan inject+write"] = lambda: scan_write(b_state, keys)
        cases["scan guard alone"] = lambda: scan_guard(t_state, scores)
        cases["dispatch b, state via tuner"] = lambda: b_loop_state((b_state, t_state), key_list)
        cases["dispatch b, tuner 2nd call"] = lambda: b_loop((b_state, t_state), key_list)
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--steps-per-window",
        type=int,
        default=None,
        help="minibatch steps per window (default: one epoch = 16)",
    )
    parser.add_argument(
        "--hidden", type=lambda s: tuple(int(h) for h in s.split(",")), default=(64,)
    )
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args(argv)
    args.steps = args.steps_per_window or len(digits.load_digits_split(0).y_train) // 64

    cases = build(args)
    for fn in cases.values():  # warm up: compile everything before timing
        jax.block_until_ready(fn())
    times = {name: [] for name in cases}
    order = list(cases)
    for r in range(args.repeats):
        # Interleave all cases; alternate the order so drift and order effects cancel.
        for name in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            jax.block_until_ready(cases[name]())
            times[name].append(time.perf_counter() - start)

    def ms(name):  # median milliseconds per window
        return 1e3 * statistics.median(times[name]) / args.windows

    def ratio(name, base):  # median and range of the per-repeat ratios (paired)
        rs = [b / a for a, b in zip(times[base], times[name], strict=True)]
        return statistics.median(rs), min(rs), max(rs)

    print(
        f"windows={args.windows} repeats={args.repeats} steps/window={args.steps} "
        f"hidden={args.hidden} backend={jax.default_backend()}"
    )
    print(
        f"{'mode':<9} {'(a) plain ms/win':>16} {'(b) tuned ms/win':>16} {'+us/win':>8} "
        f"{'(b)/(a)':>8} {'ratio range':>13} {'target':>7}"
    )
    for mode, target in (("scan", 1.02), ("dispatch", 1.10)):
        a, b = ms(mode + " a"), ms(mode + " b")
        med, lo, hi = ratio(f"{mode} b", f"{mode} a")
        ok = "ok" if med <= target else "MISSED"
        print(
            f"{mode:<9} {a:>16.3f} {b:>16.3f} {1e3 * (b - a):>8.0f} {med:>8.3f} "
            f"{lo:>6.3f}-{hi:<6.3f} {'<=' + str(target):>7} {ok}"
        )
    if args.breakdown:
        print("breakdown (ms/window; ratio to the plain run of the same mode):")
        rows = [
            ("scan inject", "scan a"),
            ("scan inject+write", "scan a"),
            ("dispatch b, state via tuner", "dispatch a"),
            ("dispatch b, tuner 2nd call", "dispatch a"),
        ]
        for name, base in rows:
            med, lo, hi = ratio(name, base)
            print(f"  {name:<28} {ms(name):>8.3f} {med:>7.3f} ({lo:.3f}-{hi:.3f})")
        print(f"  {'scan guard alone':<28} {ms('scan guard alone'):>8.3f}")
    return times


if __name__ == "__main__":
    main()
