"""Device benchmark: populations of the digits MLP and of PPO on CartPole through the
tuned program (``hj.program.build(task, hj.pbt(task.space), population=N)``), all
windows of a call in one jitted ``lax.scan``, as on a GPU or TPU.

For each workload and population size: compile time (trace + lower + compile, apart
from the run), steady-state throughput (optimizer steps of all members per second;
environment steps per second for PPO), memory per member, the program's floating-point
operations (counted from its jaxpr, ``_flops.py``) and the achieved FLOP/s as a share of
the device's peak. The peak comes from a small table of dense figures by device kind
(``PEAKS``), or is measured with a large float32 matrix product where the kind is not
in it (the CPU). A size that would not fit in memory or would run past
``--max-seconds`` is reported as such, and the table goes on.

    python benchmarks/device.py                       # sizes 1 8 64 512 4096, both
    python benchmarks/device.py --sizes 1 8 --what mlp --windows 2 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import hagfish_jax as hj
from _flops import count, xla_flops
from hagfish_jax.rl import PPO
from hagfish_jax.shell._affinity import pinned_if_needed
from hagfish_jax.tasks import cartpole, digits

#: Dense peak TFLOP/s by a substring of ``jax.devices()[0].device_kind`` (first match
#: wins): ``(float32 figure, its kind, bfloat16 figure)``. NVIDIA's float32 figure is
#: the CUDA cores' (no tensor cores), the one a float32 program is divided by here; at
#: JAX's default precision the tensor cores multiply float32 matrices in TF32 (about
#: 7x that on Hopper), hence the measured float32 product in the header. A TPU
#: multiplies float32 matrices in bfloat16 passes, so its bf16 figure stands for both.
PEAKS: tuple[tuple[str, float, str, float], ...] = (
    ("H200 NVL", 60.0, "fp32", 835.0),
    ("H200", 66.9, "fp32", 989.4),
    ("H100 PCIe", 51.2, "fp32", 756.0),
    ("H100", 66.9, "fp32", 989.4),
    ("A100", 19.5, "fp32", 312.0),
    ("TPU v4", 275.0, "bf16", 275.0),
    ("TPU v5 lite", 197.0, "bf16", 197.0),
    ("TPU v5e", 197.0, "bf16", 197.0),
    ("TPU v5", 459.0, "bf16", 459.0),
    ("TPU v6", 918.0, "bf16", 918.0),
)

COLUMNS = (
    "workload", "members", "compile s", "run s", "optimizer steps/s", "env steps/s",
    "state KiB/member", "program KiB/member", "device peak MiB", "GFLOP/run", "TFLOP/s",
    "of peak", "note",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    task: Any
    optimizer_steps: int  # per member and window
    env_steps: int  # per member and window (0: not an environment)


def make_workload(name: str, args: argparse.Namespace) -> Workload:
    spw = args.steps_per_window
    if name == "mlp":
        task = digits.make_task(digits.load_digits_split(0), steps_per_window=spw)
        return Workload("digits MLP", task, task.steps_per_window, 0)
    ppo = PPO(num_envs=args.ppo_envs, num_steps=args.ppo_rollout, updates_per_window=spw or 4)
    updates = ppo.updates_per_window
    opt_steps = updates * ppo.update_epochs * ppo.num_minibatches
    return Workload(
        "PPO CartPole", cartpole.make_task(ppo), opt_steps, updates * ppo.num_envs * ppo.num_steps
    )


# -- the device ------------------------------------------------------------------------------


def known_peak(kind: str, dtype: str) -> tuple[float, str] | None:
    """``(TFLOP/s, label)`` from :data:`PEAKS` for a ``dtype`` (``"fp32"`` or ``"bf16"``)
    program on a device of ``kind``, or None.

    >>> known_peak("NVIDIA H200", "fp32")
    (66.9, 'NVIDIA H200: fp32 dense, CUDA cores (table)')
    >>> known_peak("cpu", "fp32") is None
    True
    """
    for key, f32, f32_kind, bf16 in PEAKS:
        if key.lower() in kind.lower():
            if dtype == "bf16":
                return bf16, f"{kind}: bf16 dense (table)"
            where = "CUDA cores" if f32_kind == "fp32" else "bf16 passes"
            return f32, f"{kind}: {f32_kind} dense, {where} (table)"
    return None


def measured_peak(device: Any) -> float:
    """The best of ten float32 matrix products on ``device``, in TFLOP/s."""
    n = 1024 if device.platform == "cpu" else 8192
    a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), jnp.float32), device)
    f = jax.jit(jnp.matmul)
    jax.block_until_ready(f(a, a))
    best = math.inf
    for _ in range(10):
        t = time.perf_counter()
        jax.block_until_ready(f(a, a))
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e12


def free_bytes(device: Any) -> int | None:
    """Memory left on ``device`` (host memory for the CPU), or None if unknown."""
    stats = _memory_stats(device)
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if device.platform == "cpu":
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _memory_stats(device: Any) -> dict | None:
    try:
        return device.memory_stats() or None
    except Exception:  # noqa: BLE001 - not implemented on some backends
        return None


def program_bytes(compiled: Any) -> int | None:
    """Arguments + outputs + temporaries - aliased, from ``memory_analysis()`` (an object,
    a list of them or None across releases), or None."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(stats, (list, tuple)):
        stats = stats[0] if stats else None
    if stats is None:
        return None
    parts = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    total = sum(int(getattr(stats, p, 0) or 0) for p in parts)
    return total - int(getattr(stats, "alias_size_in_bytes", 0) or 0)


def _oom(err: BaseException) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


# -- one row ---------------------------------------------------------------------------------


def measure(work: Workload, n: int, args: argparse.Namespace, device: Any) -> dict:
    """Compile and time ``n`` members of ``work`` (``args.windows`` windows a call)."""
    task, windows = work.task, args.windows
    program = hj.program.build(task, hj.pbt(task.space), population=n, windows=windows)

    @jax.jit
    def start(key):
        k_hp, k_run = jax.random.split(key)
        return program.init(k_run, task.space.sample(k_hp, n))

    carry = jax.block_until_ready(start(jax.random.key(0)))
    leaves = jax.tree.leaves(carry)
    state_bytes = sum(getattr(x, "nbytes", 0) for x in leaves)
    floats = {
        x.dtype for x in jax.tree.leaves(carry.state) if jnp.issubdtype(x.dtype, jnp.floating)
    }
    dtype = (
        "bf16" if floats and floats <= {jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)} else "fp32"
    )

    def run(c):
        return hj.program.scan(program, c, windows)

    donate = () if device.platform == "cpu" else (0,)
    t0 = time.perf_counter()
    jitted = jax.jit(run, donate_argnums=donate)
    traced = jitted.trace(carry) if hasattr(jitted, "trace") else None
    lowered = jitted.lower(carry) if traced is None else traced.lower()
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    jaxpr = getattr(traced, "jaxpr", None) or jax.make_jaxpr(run)(carry)
    flops, exact = count(jaxpr)
    needed = program_bytes(compiled)
    row = {
        "workload": work.name, "members": n, "dtype": dtype, "windows": windows,
        "trace_lower_s": t1 - t0, "compile_s": t2 - t1,
        "state_bytes_per_member": state_bytes / n,
        "program_bytes_per_member": None if needed is None else needed / n,
        "flops_per_run": flops, "flops_exact": exact, "xla_cost_flops": xla_flops(compiled),
    }  # fmt: skip
    free = free_bytes(device)
    extra = None if needed is None else needed - state_bytes  # the carry is in memory already
    if free is not None and extra is not None and extra > free:
        return {**row, "note": f"OOM: needs {extra / 2**30:.1f} GiB more, {free / 2**30:.1f} free"}
    carry, rows = compiled(carry)  # warm-up
    jax.block_until_ready((carry, rows))
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        carry, rows = compiled(carry)
        jax.block_until_ready((carry, rows))
        times.append(time.perf_counter() - t)
    run_s = statistics.median(times)
    stats = _memory_stats(device) or {}
    peak = stats.get("peak_bytes_in_use")
    return {
        **row,
        "run_s": run_s,
        "optimizer_steps_per_s": n * windows * work.optimizer_steps / run_s,
        "env_steps_per_s": n * windows * work.env_steps / run_s if work.env_steps else None,
        "device_peak_bytes": None if peak is None else int(peak),
        "tflops": flops / run_s / 1e12 if flops else None,
        "note": "" if exact else "FLOPs a lower bound (while loop)",
    }


def sweep(work: Workload, args: argparse.Namespace, device: Any, done: list[dict]) -> None:
    """Every size of ``args.sizes`` for ``work``, appended to ``done`` as measured; sizes
    predicted to run past ``args.max_seconds`` or out of memory are skipped."""
    last = None
    for n in sorted(args.sizes):
        if last is not None and "run_s" in last:
            predicted = last["run_s"] * n / last["members"] * (args.repeats + 1)
            free, per = free_bytes(device), last["program_bytes_per_member"]
            if predicted > args.max_seconds:
                done.append(_skipped(work, n, f"skipped: predicted {predicted:.0f} s"))
                continue
            if free is not None and per is not None and per * n > free:
                done.append(_skipped(work, n, f"OOM (predicted {per * n / 2**30:.1f} GiB)"))
                continue
        try:
            row = measure(work, n, args, device)
        except Exception as err:
            if not _oom(err):
                raise
            row = _skipped(work, n, "OOM: " + str(err).splitlines()[0][:80])
        done.append(row)
        print(f"# {row['workload']} x {n}: {row.get('run_s', row['note'])}", file=sys.stderr)
        if args.json:
            _write(args.json, {"rows": done, "partial": True})
        if "run_s" not in row:
            break  # bigger sizes will not fit either
        last = row


def _skipped(work: Workload, n: int, note: str) -> dict:
    return {"workload": work.name, "members": n, "note": note}


# -- printing --------------------------------------------------------------------------------


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def markdown_row(r: dict) -> str:
    compile_s = None if "compile_s" not in r else r["trace_lower_s"] + r["compile_s"]
    peak = r.get("device_peak_bytes")
    per_member = (r.get("state_bytes_per_member"), r.get("program_bytes_per_member"))
    cells = (
        r["workload"], str(r["members"]), _num(compile_s, "{:.2f}"), _num(r.get("run_s"), "{:.3f}"),
        _num(r.get("optimizer_steps_per_s"), "{:,.0f}"), _num(r.get("env_steps_per_s"), "{:,.0f}"),
        *(_num(None if b is None else b / 1024, "{:,.1f}") for b in per_member),
        _num(None if peak is None else peak / 2**20, "{:,.0f}"),
        _num(None if "run_s" not in r else r["flops_per_run"] / 1e9, "{:,.3f}"),
        _num(r.get("tflops"), "{:.4f}"), _num(r.get("fraction"), "{:.2%}"), r.get("note", ""),
    )  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def header(
    args: argparse.Namespace, argv: list[str], device: Any, peaks: dict, measured: float
) -> str:
    today = datetime.date.today().isoformat()
    peak, label = peaks["fp32"]
    memory = "device `memory_stats()` peak_bytes_in_use (process high-water mark so far)"
    return "\n".join([
        f"### Device benchmark, {today}: {device.device_kind} ({device.platform}, "
        f"{jax.device_count()} device(s)), jax {jax.__version__}",
        "",
        f"Command: `python benchmarks/device.py {' '.join(argv)}`".rstrip(),
        "",
        f"- each call runs {args.windows} windows of the PBT population in one jitted scan; "
        f"run s is the median of {args.repeats} calls after a warm-up; compile s is "
        "trace + lower + compile of that call",
        "- optimizer steps/s counts every member's steps; env steps/s the environment steps "
        "of PPO's rollouts",
        "- state: live bytes of the carry (states, snapshots, tuner, best member) / N; "
        "program: compiled `memory_analysis()` (arguments + outputs + temporaries - aliased) "
        f"/ N; device peak: {memory if _memory_stats(device) else 'not reported here'}",
        "- FLOPs: counted from the program's jaxpr, scan bodies times their length (XLA's "
        "`cost_analysis()` counts a loop body once: kept as `xla_cost_flops` in --json)",
        f"- peak: {peak:g} TFLOP/s, {label}; the programs are float32; a float32 "
        f"matrix product measured here: {measured:.4g} TFLOP/s",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 2) + "---|",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table; returns what ``--json`` writes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64, 512, 4096])
    p.add_argument("--what", nargs="+", choices=("mlp", "ppo"), default=["mlp", "ppo"])
    p.add_argument("--windows", type=int, default=10, help="windows per timed call")
    p.add_argument("--steps-per-window", type=int, default=None,
                   help="MLP optimizer steps (default one epoch, 16) and PPO updates "
                   "(default 4) per window")  # fmt: skip
    p.add_argument("--ppo-envs", type=int, default=16, help="environments per PPO agent")
    p.add_argument("--ppo-rollout", type=int, default=64, help="steps per PPO rollout")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per size")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="skip a size whose timed calls are predicted to take longer")  # fmt: skip
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's peak")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows here")
    args = p.parse_args(argv)
    for name in ("windows", "repeats", "ppo_envs", "ppo_rollout"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.sizes) < 1 or (args.steps_per_window is not None and args.steps_per_window < 1):
        p.error("--sizes and --steps-per-window must be >= 1")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        p.error(f"--peak-tflops must be > 0, got {args.peak_tflops}")

    device = jax.devices()[0]
    kind = device.device_kind
    workloads = [make_workload(w, args) for w in dict.fromkeys(args.what)]
    # A float32 matrix product is measured everywhere (a reference beside a table
    # figure; the peak where the kind is not in the table) after the rows, so that it
    # does not raise their device peak; on a CPU also before, since a busy host slows
    # either and the best counts.
    first = measured_peak(device) if device.platform == "cpu" else 0.0
    rows: list[dict] = []
    # jax 0.10+'s CPU runtime can stall vmapped programs on two cores: pinned to one
    # there (hagfish_jax.shell._affinity); an accelerator's runs are not affected
    with pinned_if_needed() if device.platform == "cpu" else contextlib.nullcontext():
        for work in workloads:
            sweep(work, args, device, rows)
    measured = max(first, measured_peak(device))
    if args.peak_tflops is not None:
        peaks = {d: (args.peak_tflops, "given by --peak-tflops") for d in ("fp32", "bf16")}
    elif known_peak(kind, "fp32"):
        peaks = {d: known_peak(kind, d) for d in ("fp32", "bf16")}
    else:
        tries = 20 if device.platform == "cpu" else 10  # the CPU measures twice
        label = f"measured matmul peak (float32, best of {tries})"
        peaks = {d: (measured, label) for d in ("fp32", "bf16")}
    for row in rows:
        if row.get("tflops") is not None:
            peak, label = peaks[row["dtype"]]
            row.update(peak_tflops=peak, peak_label=label, fraction=row["tflops"] / peak)
    table = "\n".join([header(args, argv, device, peaks, measured), *map(markdown_row, rows)])
    print(table, flush=True)
    result = {
        "date": datetime.date.today().isoformat(), "device_kind": kind,
        "platform": device.platform, "jax": jax.__version__, "argv": argv,
        "peak_tflops": peaks["fp32"][0], "peak_label": peaks["fp32"][1],
        "measured_matmul_tflops": measured, "rows": rows, "table": table,
    }  # fmt: skip
    if args.json:
        _write(args.json, result)
    return result


def _write(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=_plain)


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else str(x)


if __name__ == "__main__":
    main()
