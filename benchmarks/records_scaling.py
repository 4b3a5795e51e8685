"""Run records at scale: the time of one ``RunRecords.log`` / ``event`` call as the files
grow, against rewriting the whole file on every call (what records did before).

For each size, the script writes that many single-row ``log`` calls and that many
``event`` calls into a fresh directory and reports the mean time per call over the last
1,000 calls (the calls at that size). The rewrite column replays the old behaviour
(the whole ``metrics.csv`` written again through a temporary file and a rename) for
the sizes where it finishes in reasonable time.

    python benchmarks/records_scaling.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hagfish_jax.shell.records import RunRecords, _csv_text, write_atomic

ROW = {"val_accuracy": 0.5, "val_loss": 1.25, "learning_rate": 1e-3, "cost": 64.0}


def per_call(size: int, kind: str) -> float:
    """Mean seconds per call over the calls from ``size - 1000`` to ``size``."""
    with tempfile.TemporaryDirectory() as d, RunRecords(d) as rec:
        tail = min(1000, size)
        for w in range(size - tail):
            if kind == "log":
                rec.log("run", [{"window": w, **ROW}])
            else:
                rec.event("exploit", window=w, member=1, parent=2)
        t = time.perf_counter()
        for w in range(size - tail, size):
            if kind == "log":
                rec.log("run", [{"window": w, **ROW}])
            else:
                rec.event("exploit", window=w, member=1, parent=2)
        return (time.perf_counter() - t) / tail


def rewrite_per_call(size: int) -> float:
    """The old way: every call rewrites the whole file (timed over the last 100 calls)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "metrics.csv"
        rows = [{"window": w, **ROW} for w in range(size - 100)]
        fields = list(rows[0]) if rows else ["window", *ROW]
        t = time.perf_counter()
        for w in range(size - 100, size):
            rows.append({"window": w, **ROW})
            write_atomic(path, _csv_text(fields, rows))
        return (time.perf_counter() - t) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--rewrite-max", type=int, default=10000,
                        help="largest size to time the whole-file rewrite at")
    args = parser.parse_args()
    print("\n| rows / events in the file | log, ms per call | event, ms per call | "
          "rewrite (before), ms per call | rewrite / log |")
    print("|---:|---:|---:|---:|---:|")
    first = None
    for size in args.sizes:
        log, event = per_call(size, "log"), per_call(size, "event")
        first = first or (log, event)
        rewrite = rewrite_per_call(size) if size <= args.rewrite_max else None
        rw = f"{rewrite * 1e3:.2f}" if rewrite else "not run"
        ratio = f"{rewrite / log:.1f}x" if rewrite else ""
        print(f"| {size:,} | {log * 1e3:.3f} | {event * 1e3:.3f} | {rw} | {ratio} |")
    print(f"\nlog at {args.sizes[-1]:,} / at {args.sizes[0]:,}: {log / first[0]:.2f}x; "
          f"event: {event / first[1]:.2f}x (target: within 2x)")


if __name__ == "__main__":
    main()
