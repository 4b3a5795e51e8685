"""flax NNX: tune an ``nnx.Module`` on digits, one guarded run and a PBT population.

The model is an ordinary NNX module (``nnx.Linear``, ``nnx.Dropout`` with its own
``nnx.Rngs``); the optimizer is ``optax.inject_hyperparams(optax.adamw)``, so the
learning rate and weight decay are arrays in its state, and label smoothing travels
beside them. ``hagfish_jax.tasks.nnx_task.make_task`` turns the module factory into a
task with ``nnx.split``/``nnx.merge``: the state is plain arrays, so the tuned program
vmaps it over a population, keeps snapshots and rolls back exactly as for a linen model.

1. One run, tuned by a guarded finite-difference tuner, as one jitted ``lax.scan``.
2. A PBT population of NNX models, the whole population one jitted program. Half way,
   one member is given a learning rate that makes it diverge: its window scores NaN,
   its weights are restored from its snapshot, and it goes on (PBT replaces it with a
   copy of a good member once it is due). New hyperparameters never recompile.

    python examples/nnx_digits.py          # needs: pip install 'hagfish-jax[tasks]'
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import hagfish_jax as hj
from hagfish_jax.tasks import digits, nnx_task

SPACE = hj.Space(
    learning_rate=hj.LogUniform(1e-4, 3e-1),
    weight_decay=hj.LogUniform(1e-6, 1e-2),
    label_smoothing=hj.Uniform(0.0, 0.2),
)
DEFAULTS = {"learning_rate": 1e-3, "weight_decay": 1e-4, "label_smoothing": 0.0}


class MLP(nnx.Module):
    """64 pixels -> ``hidden`` ReLU units with dropout -> 10 logits."""

    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, hidden, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.dropout(nnx.relu(self.hidden(x))))


def make_task(data, hidden=64, batch_size=64, steps_per_window=None):
    """The NNX digits task: AdamW with injected values, label smoothing as an extra."""
    tx = optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)(
        learning_rate=DEFAULTS["learning_rate"], weight_decay=DEFAULTS["weight_decay"]
    )
    x_val, y_val = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)

    def loss(model, batch, hp):  # the module is in training mode: dropout is on
        x, y = batch
        labels = optax.smooth_labels(jax.nn.one_hot(y, 10), hp["label_smoothing"])
        return optax.softmax_cross_entropy(model(x), labels).mean()

    def metrics(model, x, y, loss_name):  # the module is in evaluation mode: no dropout
        logits = model(x)
        return {
            "score": jnp.mean(jnp.argmax(logits, -1) == y),
            loss_name: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
        }

    return nnx_task.make_task(
        lambda rngs: MLP(hidden, rngs=rngs),
        tx,
        loss,
        (data.x_train, data.y_train),
        lambda model: metrics(model, x_val, y_val, "val_loss"),
        space=SPACE,
        default_hparams=DEFAULTS,
        extra=("label_smoothing",),
        batch_size=batch_size,
        steps_per_window=steps_per_window,
        diverge_above=1.25 * math.log(10.0),  # worse than a uniform guess
        test=lambda model: metrics(model, x_test, y_test, "loss"),
        name="nnx_digits",
        score_name="val_accuracy",
    )


def tune_one(task, windows, key):
    """One run tuned by guarded finite differences: init, scan and test in one jit."""
    program = hj.program.build(task, hj.guard(hj.finite_difference(SPACE), space=SPACE))

    @jax.jit
    def train(key):
        carry, rows = hj.program.scan(program, program.init(key), windows)
        return carry.best, rows, task.test(carry.best.state)["score"]

    best, rows, test_acc = jax.device_get(train(key))
    return {
        "scores": rows["score"],
        "learning_rate": rows["learning_rate"],
        "rollbacks": int(rows["rollback"].sum()),
        "best_score": float(best.score),
        "test_accuracy": float(test_acc),
    }


def tune_population(task, n, windows, key):
    """A PBT population of ``n`` NNX models, run as two halves of one compiled program;
    between them member 0 is given a learning rate that makes it diverge."""
    program = hj.program.build(task, hj.pbt(SPACE), population=n, windows=windows)
    # random starting values per member; both halves are the same compiled scan
    init = jax.jit(lambda key: program.init(key, SPACE.sample(jax.random.fold_in(key, 1), n)))
    half = jax.jit(lambda carry: hj.program.scan(program, carry, windows // 2))
    carry, first = half(init(key))
    lr = hj.get_hparams(carry.state)["learning_rate"]  # (n,): one per member
    carry = carry._replace(state=hj.set_hparams(carry.state, {"learning_rate": lr.at[0].set(1e3)}))
    carry, second = half(carry)  # new values are arrays: no retrace, no recompile
    rows = jax.device_get(jax.tree.map(lambda a, b: np.concatenate([a, b]), first, second))
    test = jax.jit(task.test)(carry.best.state)
    return {
        "scores": rows["score"],
        "parents": rows["parent"],
        "rollback": rows["rollback"],
        "diverged_window": windows // 2,
        "finite": all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(carry.state.params)),
        "best_score": float(carry.best.score),
        "best_member": int(carry.best.member),
        "test_accuracy": float(test["score"]),
        "model": task.model(carry.best.state),  # the best member, back as an nnx.Module
        "program": program,
        "init": init,
        "half": half,
    }


def run(n=8, windows=16, seed=0, steps_per_window=None, hidden=64, verbose=True):
    """Train both ways. ``windows`` is even (the population runs it in two halves).

    Returns:
      ``{"single": ..., "population": ...}``: what each measured; the population's also
      holds its program and compiled ``init``/``half`` for callers that go on.
    """
    if windows < 2 or windows % 2:
        raise ValueError(f"run: windows must be an even number >= 2, got {windows!r}")
    task = make_task(digits.load_digits_split(seed), hidden, steps_per_window=steps_per_window)
    key_single, key_pop = jax.random.split(jax.random.key(seed))
    single = tune_one(task, windows, key_single)
    pop = tune_population(task, n, windows, key_pop)
    if verbose:
        print("one guarded run:")
        print(f"  val accuracy by window: {[round(float(v), 3) for v in single['scores']]}")
        print(f"  learning rate by window: {[f'{v:.2g}' for v in single['learning_rate']]}")
        print(
            f"  best val accuracy {single['best_score']:.4f}, test accuracy "
            f"{single['test_accuracy']:.4f}, rollbacks {single['rollbacks']}"
        )
        print(f"PBT population of {n} NNX models:")
        best = [round(float(v), 3) for v in np.nanmax(pop["scores"], 1)]
        print(f"  best val accuracy by window: {best}")
        k, parents = pop["diverged_window"], pop["parents"][:, 0]
        replaced = np.flatnonzero(parents[k:] != 0)
        then = "not replaced since"
        if replaced.size:
            w = k + int(replaced[0])
            then = f"replaced at window {w} by a copy of member {parents[w]}"
        print(
            f"  window {k}: member 0 trained with learning rate 1e3, scored "
            f"{pop['scores'][k, 0]}, rolled back to its snapshot: "
            f"{bool(pop['rollback'][k, 0])}; {then}"
        )
        print(
            f"  best member {pop['best_member']}: val accuracy {pop['best_score']:.4f}, test "
            f"accuracy {pop['test_accuracy']:.4f} ({type(pop['model']).__name__}; the "
            f"population's window compiled {pop['half']._cache_size()}x)"
        )
    return {"single": single, "population": pop}


if __name__ == "__main__":
    run()
