"""Population-based training: 16 MLPs on digits as one jitted program.

``hj.program.build(task, hj.pbt(...), population=16)`` is the tuned window for the
whole population: every member trains one epoch (the task's functions, vmapped), is
evaluated on the validation split, ``hj.pbt`` picks who copies whom, weights are
copied with one gather (``hj.population.exploit``) and the explored hyperparameters
are written into the optimizer states (``hj.set_hparams``). The program also keeps
the best member seen in any generation. The whole run is one ``lax.scan``, compiled
once. (``program.train``, ``program.evaluate`` and ``program.tune`` are the same
window in pieces, for a loop of your own.)

    python examples/pbt_digits.py          # needs: pip install 'hagfish-jax[tasks]'
"""

import jax
import numpy as np

import hagfish_jax as hj
from hagfish_jax.tasks import digits


def run(n=16, generations=20, seed=0, steps_per_window=None, hidden=(64,)):
    task = digits.make_task(
        digits.load_digits_split(seed), steps_per_window=steps_per_window, hidden=hidden
    )
    program = hj.program.build(
        task, hj.pbt(task.space, fraction=0.25), population=n, windows=generations
    )

    @jax.jit
    def train(key):
        k_hp, k_run = jax.random.split(key)
        carry = program.init(k_run, task.space.sample(k_hp, n))  # (n,) values per name
        carry, rows = hj.program.scan(program, carry, generations)
        # only the rows read below: XLA skips the metrics no one reads (README, "Compile time")
        rows = {k: rows[k] for k in ("score", "parent")}
        return carry.best, rows, task.test_accuracy(carry.best.state)

    best, rows, test_acc = jax.device_get(train(jax.random.key(seed)))
    scores, parents = rows["score"], rows["parent"]  # (generations, n) each
    best_by_generation = [round(float(s), 3) for s in np.nanmax(scores, 1)]  # NaN: diverged
    print(f"val accuracy by generation (best member): {best_by_generation}")
    print(f"members replaced per generation: {(parents != np.arange(n)).sum(1).tolist()}")
    print(
        f"best member {int(best.member)} (generation {int(best.window)}): "
        f"val accuracy {float(best.score):.4f}, test accuracy {float(test_acc):.4f}"
    )
    print("its hyperparameters:", ", ".join(f"{k}={best.hparams[k]:.3g}" for k in task.space.names))
    return scores, parents


if __name__ == "__main__":
    run()
