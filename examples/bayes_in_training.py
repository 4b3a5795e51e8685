"""Safe in-training Bayesian optimisation, set up from a config.

One flax MLP on digits starts with a learning rate ten times too small. A guarded
``bayes`` tuner (a GP on score improvement per window, with training progress as an
input) moves it while the model trains; the guard bounds every step, smooths the
score and rolls weights and values back after a confirmed regression. The whole run
is one jitted ``lax.scan`` of ``hj.program``'s window.

    python examples/bayes_in_training.py      # needs: pip install 'hagfish-jax[tasks]'
"""

import jax

import hagfish_jax as hj
from hagfish_jax.tasks import digits

CONFIG = {  # the same thing as a YAML file: hj.from_config("tune.yaml")
    "space": {"learning_rate": [1e-4, 3e-1]},
    "tuner": {"strategy": "bayes", "candidates": 128},
    "guard": {"max_delta": 0.5, "smoothing": 2, "tolerance": 0.05, "patience": 2, "cooldown": 2},
    "schedule": {"warmup": 2, "tune_every": 1},
}


def run(windows=40, seed=0, start_lr=1e-4, steps_per_window=None, hidden=(64,), verbose=True):
    config = hj.from_config(CONFIG)
    tuner = config.build()
    task = digits.make_task(
        digits.load_digits_split(seed), steps_per_window=steps_per_window, hidden=hidden
    )
    # train, evaluate, tune, keep best, roll back; bayes learns the run's length from windows=
    program = hj.program.build(task, tuner, windows=windows)
    carry = jax.jit(program.init)(jax.random.key(seed), {"learning_rate": start_lr})
    carry, rows = jax.jit(lambda c: hj.program.scan(program, c, windows))(carry)
    best = carry.best  # the best window's state, hyperparameters and score
    test = float(jax.jit(task.test_accuracy)(best.state))
    if verbose:
        print(f"{'window':>6} {'val acc':>8} {'learning rate':>14}")
        for w in range(0, windows, max(1, windows // 10)):
            flag = "  rollback" if rows["rollback"][w] else ""
            score, lr = float(rows["score"][w]), float(rows["learning_rate"][w])
            print(f"{w:>6} {score:>8.4f} {lr:>14.3e}{flag}")
        print(f"best val accuracy {float(best.score):.4f}, its test accuracy {test:.4f}")
    return rows, float(best.score), test


if __name__ == "__main__":
    run()
