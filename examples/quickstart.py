"""Quickstart: tune a flax MLP's learning rate, dropout and label smoothing as it trains.

The whole run is ONE jitted ``lax.scan`` over windows of ``hj.program``. Each window
trains one epoch, evaluates, lets the guarded tuner propose new hyperparameters, keeps
the best state, rolls back if the guard says so, and writes the new values into the
state. Writing hyperparameters never recompiles: they are arrays inside the state.

    python examples/quickstart.py        # needs: pip install 'hagfish-jax[tasks]'
"""

import jax

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
    # train -> evaluate -> tune -> keep the best / roll back -> write the new values
    program = hj.program.build(task, tuner)

    @jax.jit
    def train(key):
        carry = program.init(key)  # task.default_hparams: lr 1e-3, dropout 0.1, ...
        carry, rows = hj.program.scan(program, carry, windows)
        return carry.best, rows, task.test_accuracy(carry.best.state)

    best, rows, test_acc = jax.device_get(train(jax.random.key(seed)))
    # rows: one entry per window; the hyperparameters are those the window trained with
    rows = dict(
        val_acc=rows["score"],
        train_acc=rows["train_score"],
        lr=rows["learning_rate"],
        dropout=rows["dropout_rate"],
        smoothing=rows["label_smoothing"],
        rollback=rows["rollback"],
    )
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
            f"best window {int(best.window)}: val acc {float(best.score):.4f}, "
            f"test acc {float(test_acc):.4f}"
        )
    return {
        "best_window": int(best.window),  # the program's best (ties: lower val loss)
        "best_val_accuracy": float(best.score),
        "test_accuracy": float(test_acc),
        "rows": rows,
    }


if __name__ == "__main__":
    run()
