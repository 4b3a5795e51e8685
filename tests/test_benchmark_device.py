"""Smoke test of benchmarks/device.py on the CPU: MLP populations of 1 and 8 and one PPO
agent, one tiny window a call; plus its FLOP counter and its skip rules. (Each size is
one more program to compile: PPO at 8 added 8 s to the suite and nothing the MLP's
sizes do not show.)"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

pytest.importorskip("sklearn")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ARGV = ["--windows", "1", "--steps-per-window", "1", "--ppo-envs", "4"]
ARGV += ["--ppo-rollout", "8", "--repeats", "1"]
MLP = ["--sizes", "8", "1", "--what", "mlp"]
PPO = ["--sizes", "1", "--what", "ppo"]


@pytest.fixture(scope="module")
def bench():
    """``device`` and ``_flops``, imported as the scripts import each other."""
    sys.path.insert(0, str(BENCHMARKS))
    before = set(sys.modules)
    try:
        yield {name: importlib.import_module(name) for name in ("device", "_flops")}
    finally:
        sys.path.remove(str(BENCHMARKS))
        for name in set(sys.modules) - before:
            if str(BENCHMARKS) in str(getattr(sys.modules[name], "__file__", "") or ""):
                del sys.modules[name]


@pytest.fixture(scope="module")
def result(bench, tmp_path_factory):
    path = tmp_path_factory.mktemp("device") / "rows.json"
    out = bench["device"].main([*MLP, *ARGV, "--json", str(path)])
    ppo = bench["device"].main([*PPO, *ARGV])
    return out, json.loads(path.read_text()), ppo


def test_every_workload_and_size_has_a_row_with_sane_numbers(result):
    out, _, ppo = result
    rows = {(r["workload"], r["members"]): r for r in out["rows"] + ppo["rows"]}
    assert sorted(rows) == [("PPO CartPole", 1), ("digits MLP", 1), ("digits MLP", 8)]
    for (name, n), r in rows.items():
        assert r["run_s"] > 0 and r["compile_s"] > 0 and r["trace_lower_s"] > 0, r
        # one window of one step (MLP) or one PPO update (4 epochs x 4 minibatches)
        steps = n * (1 if name == "digits MLP" else 16)
        assert r["optimizer_steps_per_s"] == pytest.approx(steps / r["run_s"])
        if name == "PPO CartPole":  # one update: 4 environments x 8 steps each
            assert r["env_steps_per_s"] == pytest.approx(n * 32 / r["run_s"])
        else:
            assert r["env_steps_per_s"] is None
        assert r["flops_per_run"] > 0 and r["flops_exact"]
        assert r["tflops"] == pytest.approx(r["flops_per_run"] / r["run_s"] / 1e12)
        assert 0.0 < r["fraction"] <= 1.0, r
        assert r["peak_label"].startswith("measured matmul peak")
        assert r["state_bytes_per_member"] > 0
        assert r["program_bytes_per_member"] >= r["state_bytes_per_member"] / 2


def test_counts_scale_with_the_population_and_cover_the_model(result):
    rows = {(r["workload"], r["members"]): r for r in result[0]["rows"] + result[2]["rows"]}
    name = "digits MLP"
    one, eight = rows[name, 1]["flops_per_run"], rows[name, 8]["flops_per_run"]
    assert 7.5 < eight / one < 8.5, (name, one, eight)
    # a member's state is counted once per member, not once for the population
    per_one, per_eight = (rows[name, n]["state_bytes_per_member"] for n in (1, 8))
    assert per_eight <= per_one
    # the MLP (64 -> 64 -> 10) at least multiplies its 64-example batch forward and back
    # and evaluates its 359 validation images
    weights = 64 * 64 + 64 * 10
    assert rows["digits MLP", 1]["flops_per_run"] >= 2 * weights * (2 * 64 + 359)
    # XLA's own count sees a PPO update's scans once: far below the jaxpr count
    ppo = rows["PPO CartPole", 1]
    assert ppo["xla_cost_flops"] is None or ppo["xla_cost_flops"] < ppo["flops_per_run"] / 2


def test_the_table_and_json_are_ready_to_paste(result):
    out, written, ppo = result
    lines = out["table"].splitlines()
    assert lines[0].startswith("### Device benchmark") and jax.__version__ in lines[0]
    assert "python benchmarks/device.py --sizes 8 1" in out["table"]
    body = [ln for ln in lines if ln.startswith("| ") and "workload" not in ln]
    assert [ln.split(" | ")[:2] for ln in body] == [["| digits MLP", "1"], ["| digits MLP", "8"]]
    assert [ln.split(" | ")[:2] for ln in ppo["table"].splitlines() if ln.startswith("| PPO")] == [
        ["| PPO CartPole", "1"]
    ]
    header = next(ln for ln in lines if "workload" in ln)
    assert all(ln.count("|") == header.count("|") for ln in body)
    assert written["rows"] == json.loads(json.dumps(out["rows"]))
    assert written["device_kind"] == jax.devices()[0].device_kind


def test_flop_counter_multiplies_loops_and_agrees_with_xla_without_them(bench):
    count = bench["_flops"].count
    x = jnp.ones((16, 32))
    w = jnp.ones((32, 32))

    def layer(x):
        return jnp.tanh(x @ w)

    once, exact = count(jax.make_jaxpr(layer)(x))
    assert exact and once == 2 * 16 * 32 * 32 + 16 * 32
    xla = bench["_flops"].xla_flops(jax.jit(layer).lower(x).compile())
    assert xla is None or abs(xla - once) / once < 0.1

    def scanned(x):
        return jax.lax.scan(lambda c, _: (layer(c), None), x, None, length=7)[0]

    assert count(jax.make_jaxpr(scanned)(x)) == (7 * once, True)
    both = jax.make_jaxpr(lambda p, x: jax.lax.cond(p, layer, jnp.sin, x))(True, x)
    assert count(both) == (once, True)  # the costlier branch
    looped = jax.make_jaxpr(lambda x: jax.lax.while_loop(lambda c: c[0, 0] < 5, layer, x))(x)
    flops, exact = count(looped)
    assert not exact and flops >= once  # the body once: a lower bound


def test_peaks_come_from_the_table_by_device_kind(bench):
    peak = bench["device"].known_peak
    assert peak("NVIDIA H200", "fp32")[0] == 66.9
    assert peak("NVIDIA H100 80GB HBM3", "bf16")[0] == 989.4
    assert peak("NVIDIA A100-SXM4-80GB", "fp32")[0] == 19.5
    assert peak("TPU v5 lite", "fp32")[0] == 197.0  # not v5p's 459
    assert peak("TPU v5p", "bf16")[0] == 459.0
    assert peak("cpu", "fp32") is None


def test_sizes_that_would_not_fit_or_take_too_long_are_reported(bench, monkeypatch):
    device_mod = bench["device"]
    calls = []

    def fake_measure(work, n, args, device):
        calls.append(n)
        if n == 64:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return {"workload": work.name, "members": n, "run_s": 0.01 * n, "note": "",
                "program_bytes_per_member": 1000.0}  # fmt: skip

    monkeypatch.setattr(device_mod, "measure", fake_measure)
    monkeypatch.setattr(device_mod, "free_bytes", lambda device: 10**9)
    work = device_mod.Workload("w", None, 1, 0)
    args = argparse.Namespace(sizes=[1, 8, 64, 512], repeats=1, max_seconds=60.0, json=None)
    rows = []
    device_mod.sweep(work, args, None, rows)
    assert calls == [1, 8, 64]  # stops after the first size that ran out of memory
    assert rows[2]["note"].startswith("OOM: RESOURCE_EXHAUSTED") and "run_s" not in rows[2]
    assert len(rows) == 3 and "-" in device_mod.markdown_row(rows[2])

    calls.clear()
    rows = []
    args.sizes, args.max_seconds = [1, 8, 4096], 1.0  # 4096: ~82 s predicted
    device_mod.sweep(work, args, None, rows)
    assert calls == [1, 8] and rows[2]["note"].startswith("skipped: predicted")

    calls.clear()
    rows = []
    monkeypatch.setattr(device_mod, "free_bytes", lambda device: 5000)
    args.max_seconds = 1e9
    device_mod.sweep(work, args, None, rows)
    assert calls == [1] and rows[1]["note"].startswith("OOM (predicted")

    def broken(work, n, args, device):
        raise ValueError("a bug, not memory")

    monkeypatch.setattr(device_mod, "measure", broken)
    with pytest.raises(ValueError, match="a bug"):
        device_mod.sweep(work, args, None, [])


def test_bad_arguments_fail_before_any_work(bench, capsys):
    for argv in (["--sizes", "0"], ["--windows", "0"], ["--peak-tflops", "-1"], ["--what", "x"]):
        with pytest.raises(SystemExit):
            bench["device"].main(argv)
    assert "--windows must be >= 1" in capsys.readouterr().err


def test_the_benchmark_modules_doctests_pass(bench):
    import doctest

    for name in ("device", "_flops"):
        failed, tried = doctest.testmod(bench[name])
        assert tried > 0 and failed == 0, name
