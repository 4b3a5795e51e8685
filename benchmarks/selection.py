"""Selection on a small validation set: the winner's curse, old rule against new.

The digits MLP with a validation set cut to ``--val`` examples (36 by default, so
validation accuracy moves in steps of 1/36 and many models tie). Two searches with the
same budget (``--members`` models x ``--windows`` one-epoch windows), both as one
``hj.program`` population: ``pbt`` (``hj.pbt``, defaults) and ``random`` (random search:
the same random starting hyperparameters, ``hj.fixed()``). Every (member, window) is a
candidate model; each is scored on validation and, for the report only, on the test
split. Two selection rules pick the final model:

* ``first``: the first model to reach the best validation accuracy (the program's
  rule before issue 12);
* ``loss``: the best validation accuracy, ties broken by the lower validation loss
  (the program's rule now; read from ``carry.best``, and checked against the rows).

The table shows the selected model's test accuracy and test cross-entropy (median and
range over seeds) and the ratio of PBT's test cross-entropy to random search's under
the same rule. Target: PBT's selected model no worse than random search's in test loss
at equal accuracy.

    python benchmarks/selection.py --seeds 5
"""

from __future__ import annotations

import argparse
import statistics

import jax
import numpy as np

import hagfish_jax as hj
from hagfish_jax.tasks import digits
from hagfish_jax.tasks.classification import Split


def small_val_task(seed: int, n_val: int):
    d = digits.load_digits_split(seed)
    d = Split(d.x_train, d.y_train, d.x_val[:n_val], d.y_val[:n_val], d.x_test, d.y_test)
    task = digits.make_task(d, hidden=(64,))
    evaluate = task.evaluate

    def with_test(state):  # test metrics ride along for the report; never selected on
        m = task.test(state)
        return {**evaluate(state), "test_acc": m["score"], "test_loss": m["loss"]}

    return task.replace(evaluate=with_test)


def run(task, tuner, hp, members, windows, seed):
    prog = hj.program.build(task, tuner, population=members, windows=windows)
    carry = jax.jit(prog.init)(jax.random.key(seed), hp)
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, windows))(carry)
    return carry, {k: np.asarray(v) for k, v in rows.items()}


def first_best(rows) -> int:
    s = np.where(np.isfinite(rows["score"]), rows["score"], -np.inf).ravel()
    return int(np.flatnonzero(s == s.max())[0])


def loss_best(rows) -> int:
    s = np.where(np.isfinite(rows["score"]), rows["score"], -np.inf).ravel()
    tied = np.flatnonzero(s == s.max())
    return int(tied[np.argmin(rows["val_loss"].ravel()[tied])])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--val", type=int, default=36)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--windows", type=int, default=20)
    args = parser.parse_args(argv)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        task = small_val_task(seed, args.val)
        hp = task.space.sample(jax.random.key(100 + seed), args.members)
        searches = (("pbt", hj.pbt(task.space)), ("random", hj.fixed()))
        for name, tuner in searches if seed % 2 == 0 else searches[::-1]:
            carry, rows = run(task, tuner, hp, args.members, args.windows, seed)
            picked = loss_best(rows)
            w, m = divmod(picked, args.members)
            # the program's own choice is the loss rule's (same window and member)
            assert (int(carry.best.window), int(carry.best.member)) == (w, m), (w, m)
            for rule, i in (("first", first_best(rows)), ("loss", picked)):
                acc, loss = rows["test_acc"].ravel()[i], rows["test_loss"].ravel()[i]
                results.setdefault((name, rule), []).append((float(acc), float(loss)))

    def cell(values):
        return f"{statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})"

    print(
        f"digits MLP, validation set of {args.val}, {args.members} members x "
        f"{args.windows} windows, seeds 0-{args.seeds - 1}, backend={jax.default_backend()}"
    )
    print(f"{'search':<7} {'rule':<6} {'test accuracy':>24} {'test cross-entropy':>24} "
          f"{'CE / random CE':>15}")
    for rule in ("first", "loss"):
        for name in ("pbt", "random"):
            v = results[(name, rule)]
            ratio = statistics.median(
                a[1] / b[1] for a, b in zip(v, results[("random", rule)], strict=True)
            )
            print(f"{name:<7} {rule:<6} {cell([a for a, _ in v]):>24} "
                  f"{cell([b for _, b in v]):>24} {ratio:>15.2f}")
    return results


if __name__ == "__main__":
    main()
