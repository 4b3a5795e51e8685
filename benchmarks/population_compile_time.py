"""Population benchmark, part ``compile_time``: how much longer a 32-member program
takes to compile than the single-member one (issue 12, item 6; target <= 1.5x).

Each program is compiled in a fresh process (no persistent cache, nothing compiled
before it but the few eager ops of building the task): the digits MLP (64,) task's
``hj.program`` for a scan of 10 one-epoch windows, as

* ``single``: one run, ``hj.fixed()``;
* ``pop32 fixed``: 32 members, ``hj.fixed()`` (random search's program);
* ``pop32 pbt``: 32 members, ``hj.pbt(task.space)`` (the population benchmarks');
* ``pop32 fixed shared``, ``pop32 pbt shared``: the same with ``shared_key=True``
  (every member trains a window with the same key: one set of random numbers);
* ``pop1 fixed``, ``pop1 pbt``: a population of one member with the same tuner (not
  targets: they show how much of a population program's compile time its structure
  costs, whatever the number of members). The ``x pop1`` column reads every population
  row against the one-member population of its own tuner: what going from one member
  to 32 costs, apart from the population's structure and the tuner.

``--threefry`` chooses the lowering of JAX's random numbers: ``jax`` (JAX's CPU loop),
``unrolled`` (``hj.unroll_threefry()``, the same bits) or ``both`` (the default; each
lowering's ratios are read against its own single run).

The table gives the seconds of XLA's compile of the scan program (``lower(...).compile()``,
tracing and lowering apart), median over repeats; the processes of one repeat run one
after another, in alternating order. ``--tree DIR`` runs the same children against
another checkout of the package (a before/after comparison in one run: its
``hagfish_jax`` is imported instead of the installed one). ``--rows read`` compiles the
scan returning only ``score`` and ``val_loss`` (what a search reads; the throughput
and warm-cache benchmarks return only the rows they read too), so XLA drops the other
metrics, such as the training-set evaluation, on every side; ``all`` (the default)
returns every row.

    python benchmarks/population_compile_time.py [--repeats 3] [--threefry both]
    python benchmarks/population_compile_time.py --rows read --threefry jax
    python benchmarks/population_compile_time.py --tree /tmp/before --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAMS = (
    "single",
    "pop32 fixed",
    "pop32 pbt",
    "pop32 fixed shared",
    "pop32 pbt shared",
    "pop1 fixed",
    "pop1 pbt",
)
LOWERINGS = ("jax", "unrolled")
READ = ("score", "val_loss")  # what a search reads: the selection and its tie-break
WINDOWS = 10


def child(program: str, threefry: str, rows: str = "all") -> dict:
    import jax

    import hagfish_jax as hj
    from hagfish_jax.tasks import digits

    if threefry == "unrolled":
        if not hasattr(hj, "unroll_threefry"):
            raise SystemExit("this hagfish_jax has no unroll_threefry: use --threefry jax")
        hj.unroll_threefry()

    task = digits.make_task(digits.load_digits_split(0), hidden=(64,))
    if program == "single":
        prog = hj.program.build(task, hj.fixed(), windows=WINDOWS)
        carry = prog.init(jax.random.key(0))
    else:
        tuner = hj.pbt(task.space) if "pbt" in program else hj.fixed()
        shared = program.endswith("shared")
        n = 1 if program.startswith("pop1 ") else 32
        prog = hj.program.build(task, tuner, population=n, windows=WINDOWS, shared_key=shared)
        carry = prog.init(jax.random.key(0), task.space.sample(jax.random.key(1), n))
    t0 = time.perf_counter()
    def run(c):
        c, got = hj.program.scan(prog, c, WINDOWS)
        return c, got if rows == "all" else {k: got[k] for k in READ}

    lowered = jax.jit(run).lower(carry)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {"trace_lower": t1 - t0, "compile": t2 - t1}


def spawn(program: str, tree: str | None, threefry: str, rows: str = "all") -> dict:
    env = {**os.environ, "HAGFISH_COMPILE_CACHE": "0", "JAX_COMPILATION_CACHE_DIR": ""}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", program]
    cmd += ["--threefry", threefry, "--rows", rows]
    if tree:
        cmd += ["--tree", tree]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{program} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def use_tree(tree: str) -> None:
    """Import ``hagfish_jax`` from ``tree`` rather than the installed (editable) package."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, str(Path(tree).resolve()))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tree", default=None, help="another checkout to measure")
    parser.add_argument("--threefry", choices=(*LOWERINGS, "both"), default="both")
    parser.add_argument(
        "--rows", choices=("all", "read"), default="all",
        help="all: the scan returns every row; read: only score and val_loss, as a "
        "search that reads those returns (XLA drops the other metrics on both sides)",
    )
    parser.add_argument("--child", choices=PROGRAMS)
    args = parser.parse_args(argv)
    if args.child:
        if args.tree:
            use_tree(args.tree)
        print(json.dumps(child(args.child, args.threefry, args.rows)))
        return {}
    trees = [None] + ([args.tree] if args.tree else [])
    lowerings = LOWERINGS if args.threefry == "both" else (args.threefry,)
    variants = [(t, lo) for t in trees for lo in lowerings]
    runs = {(v, p): [] for v in variants for p in PROGRAMS}
    for r in range(args.repeats):
        order = [(v, p) for v in variants for p in PROGRAMS]
        for v, p in order if r % 2 == 0 else order[::-1]:
            runs[(v, p)].append(spawn(p, v[0], v[1], args.rows))
    print(
        f"\n== compile time of the digits MLP program, a scan of {WINDOWS} windows, fresh "
        f"process each, no cache, rows={args.rows}; median of {args.repeats} (XLA compile "
        f"seconds; trace+lower apart)"
    )
    print(f"{'package':<16} {'threefry':<9} {'program':<18} {'compile s':>9} "
          f"{'trace+lower s':>13} {'x single':>8} {'target':>11} {'x pop1':>6}")
    out = {}
    for v in variants:
        single = statistics.median(x["compile"] for x in runs[(v, "single")])
        pop1 = {
            t: statistics.median(x["compile"] for x in runs[(v, f"pop1 {t}")])
            for t in ("fixed", "pbt")
        }
        for p in PROGRAMS:
            c = statistics.median(x["compile"] for x in runs[(v, p)])
            lo = statistics.median(x["trace_lower"] for x in runs[(v, p)])
            ratio = c / single
            target = p.startswith("pop32")
            mark = f"<=1.5 {'ok' if ratio <= 1.5 else 'MISSED'}" if target else ""
            tuner = "pbt" if "pbt" in p else "fixed"
            per_pop1 = c / pop1[tuner] if p.startswith("pop") else None
            per = "" if per_pop1 is None else f"{per_pop1:.2f}"
            name = "installed" if v[0] is None else Path(v[0]).name
            print(f"{name:<16} {v[1]:<9} {p:<18} {c:>9.2f} {lo:>13.2f} {ratio:>8.2f} {mark:>11} "
                  f"{per:>6}")
            out[(name, v[1], p)] = {"compile": c, "ratio": ratio, "per_pop1": per_pop1}
    return out


if __name__ == "__main__":
    main()
