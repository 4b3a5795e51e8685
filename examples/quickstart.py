"""Quickstart: tune a flax MLP's learning rate, dropout and label smoothing as it trains.

The whole run is ONE jitted ``lax.scan`` over windows. Each window: train one
epoch, evaluate, let the guarded tuner propose new hyperparameters, keep the best
state, roll back if the guard says so, and write the new values into the state.
Writing hyperparameters never recompiles: they are arrays inside the state.

    python examples/quickstart.py        # needs: pip install 'hagfish-jax[tasks]'
"""

import jax
import jax.numpy as jnp

import hagfish_jax as hj
from hagfish_jax.tasks import digits


def run(
    windows: int = 30,
    seed: int = 0,
    steps_per_window: int | None = None,
    hidden=(64,),
    verbose: bool = True,
) -> dict:
    task = digits.make_task(
        digits.load_digits_split(seed), hidden=hidden, steps_per_window=steps_per_window
    )
    tuned = task.space.subspace(["learning_rate", "dropout_rate", "label_smoothing"])
    tuner = hj.guard(hj.finite_difference(tuned), space=task.space)

    def window(carry, _):
        state, tuner_state, snap, key = carry
        key, window_key = jax.random.split(key)
        in_force = hj.get_hparams(state)  # the values used by this window
        state, train_metrics = task.train_window(state, window_key)
        metrics = task.evaluate(state)  # {"score": val accuracy, ...}
        # a window whose loss exploded scores NaN: the guard restarts it
        metrics["score"] = jnp.where(train_metrics["diverged"], jnp.nan, metrics["score"])
        proposal, tuner_state = tuner.update(
            tuner_state, hj.Observation(metrics["score"], metrics["train_score"])
        )
        snap = hj.snapshot.update(snap, state, metrics["score"])  # keep the best
        state = hj.snapshot.restore_if(proposal.rollback, snap, state)
        state = hj.set_hparams(state, proposal.hparams)  # no retrace
        row = dict(
            val_acc=metrics["score"],
            train_acc=metrics["train_score"],
            lr=in_force["learning_rate"],
            dropout=in_force["dropout_rate"],
            smoothing=in_force["label_smoothing"],
            rollback=proposal.rollback,
        )
        return (state, tuner_state, snap, key), row

    @jax.jit
    def train(key):
        init_key, tuner_key, key = jax.random.split(key, 3)
        hp = task.default_hparams  # lr 1e-3, dropout 0.1, ...
        state = task.init(init_key, hp)
        carry = (state, tuner.init(tuner_key, hp), hj.snapshot.init(state), key)
        (state, _, snap, _), rows = jax.lax.scan(window, carry, None, length=windows)
        return snap, rows, task.test_accuracy(snap.state)

    snap, rows, test_acc = jax.device_get(train(jax.random.key(seed)))
    best = int(jnp.argmax(rows["val_acc"]))
    if verbose:
        print(
            f"{'window':>6} {'val acc':>8} {'train acc':>9} {'lr':>9} {'dropout':>7} "
            f"{'smoothing':>9}"
        )
        for w in range(windows):
            print(
                f"{w:>6} {rows['val_acc'][w]:>8.4f} {rows['train_acc'][w]:>9.4f} "
                f"{rows['lr'][w]:>9.2e} {rows['dropout'][w]:>7.3f} {rows['smoothing'][w]:>9.3f}"
                + ("  rollback" if rows["rollback"][w] else "")
            )
        print(
            f"best window {best}: val acc {float(snap.score):.4f}, test acc {float(test_acc):.4f}"
        )
    return {
        "best_window": best,
        "best_val_accuracy": float(snap.score),
        "test_accuracy": float(test_acc),
        "rows": rows,
    }


if __name__ == "__main__":
    run()
