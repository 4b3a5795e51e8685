"""Selection on a small validation set: the winner's curse, old rule against new.

The digits MLP with a validation set cut to ``--val`` examples (36 by default, so
validation accuracy moves in steps of 1/36 and many models tie). Two searches with the
same budget (``--members`` models x ``--windows`` one-epoch windows), both as one
``hj.program`` population: ``pbt`` (``hj.pbt``, defaults) and ``random`` (random search:
the same random starting hyperparameters, ``hj.fixed()``). Every (member, window) is a
candidate model; each is scored on validation and, for the report only, on the test
split. Three selection rules pick the final model:

* ``first``: the first model to reach the best validation accuracy (the program's
  rule before issue 12);
* ``score``: the best validation accuracy, ties broken by the lower validation loss
  (``hj.program.build(..., select="score")``, the default);
* ``loss``: the lowest validation loss, ties broken by the higher accuracy
  (``select="loss"``).

The programs are built with ``--select`` (default ``loss``) and the program's own
choice (``carry.best``) is checked against that rule computed from the rows.

The table shows the selected model's test accuracy and test cross-entropy (median and
range over seeds), the median over seeds of PBT's test cross-entropy over random
search's under the same rule, and on how many seeds PBT's is no higher. Target: PBT's
selected model no worse than random search's in test loss at equal accuracy. The rule
was chosen on seeds 0-7 and is reported on seeds 8-15 (``--first-seed 8``).

    python benchmarks/selection.py --first-seed 8 --seeds 8
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


def run(task, tuner, hp, members, windows, seed, select="loss"):
    prog = hj.program.build(task, tuner, population=members, windows=windows, select=select)
    carry = jax.jit(prog.init)(jax.random.key(seed), hp)
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, windows))(carry)
    return carry, {k: np.asarray(v) for k, v in rows.items()}


def first_best(rows) -> int:
    s = np.where(np.isfinite(rows["score"]), rows["score"], -np.inf).ravel()
    return int(np.flatnonzero(s == s.max())[0])


def score_best(rows) -> int:
    s = np.where(np.isfinite(rows["score"]), rows["score"], -np.inf).ravel()
    tied = np.flatnonzero(s == s.max())
    return int(tied[np.argmin(rows["val_loss"].ravel()[tied])])


def loss_best(rows) -> int:
    s = np.where(np.isfinite(rows["score"]), rows["score"], -np.inf).ravel()
    loss = np.where(np.isfinite(s), rows["val_loss"].ravel(), np.inf)
    tied = np.flatnonzero(loss == loss.min())
    return int(tied[np.argmax(s[tied])])


RULES = {"first": first_best, "score": score_best, "loss": loss_best}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--select", choices=("score", "loss"), default="loss")
    parser.add_argument("--val", type=int, default=36)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--windows", type=int, default=20)
    args = parser.parse_args(argv)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for seed in seeds:
        task = small_val_task(seed, args.val)
        hp = task.space.sample(jax.random.key(100 + seed), args.members)
        searches = (("pbt", hj.pbt(task.space)), ("random", hj.fixed()))
        for name, tuner in searches if seed % 2 == 0 else searches[::-1]:
            carry, rows = run(task, tuner, hp, args.members, args.windows, seed, args.select)
            w, m = divmod(RULES[args.select](rows), args.members)
            # the program's own choice is its rule's (same window and member)
            assert (int(carry.best.window), int(carry.best.member)) == (w, m), (w, m)
            for rule, pick in RULES.items():
                i = pick(rows)
                acc, loss = rows["test_acc"].ravel()[i], rows["test_loss"].ravel()[i]
                results.setdefault((name, rule), []).append((float(acc), float(loss)))

    def cell(values):
        return f"{statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})"

    print(
        f"digits MLP, validation set of {args.val}, {args.members} members x "
        f"{args.windows} windows, seeds {seeds[0]}-{seeds[-1]}, programs built with "
        f"select={args.select!r}, backend={jax.default_backend()}"
    )
    print(f"{'search':<7} {'rule':<6} {'test accuracy':>24} {'test cross-entropy':>24} "
          f"{'CE / random CE':>15} {'PBT CE <= random':>17}")
    for rule in RULES:
        for name in ("pbt", "random"):
            v = results[(name, rule)]
            ratios = [a[1] / b[1] for a, b in zip(v, results[("random", rule)], strict=True)]
            wins = f"{sum(r <= 1.0 for r in ratios)}/{len(ratios)}" if name == "pbt" else ""
            print(f"{name:<7} {rule:<6} {cell([a for a, _ in v]):>24} "
                  f"{cell([b for _, b in v]):>24} {statistics.median(ratios):>15.2f} "
                  f"{wins:>17}")
    return results


if __name__ == "__main__":
    main()
