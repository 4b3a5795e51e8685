"""The persistent compilation cache: a second `hagfish demo` with the same options
compiles nothing (and prints none of jaxlib's false alarms about cached programs); the
library's one call; bad directories refused; `hagfish --version`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import hagfish_jax as hj
from hagfish_jax.shell import cli

DEMO = ["demo", "--windows", "2", "--population", "2", "--hidden", "8", "--quiet"]


def demo(tmp_path, *extra):
    """The ``hagfish`` command as installed (its launcher), with XLA's log level unset."""
    env = {**os.environ, "HAGFISH_COMPILE_CACHE": "1", "HAGFISH_CACHE_DIR": str(tmp_path / "xla")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    out = subprocess.run(
        [sys.executable, "-m", "hagfish_cli", *DEMO, "--out", str(tmp_path / "run"), *extra],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # jaxlib's false alarms on every program loaded from the cache stay hidden
    assert "cpu_aot_loader" not in out.stderr and "version compatibility" not in out.stderr
    return out.stdout


def counts(stdout):
    m = re.search(r"compile cache (\S+): (\d+) XLA programs, (\d+) loaded from the cache, "
                  r"(\d+) compiled", stdout)
    assert m, stdout[-1000:]
    return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))


@pytest.mark.timeout(500)
def test_the_second_demo_with_the_same_options_compiles_nothing(tmp_path):
    where, requested, cached, compiled = counts(demo(tmp_path))
    assert where == str(tmp_path / "xla") and requested > 5 and compiled == requested
    assert any((tmp_path / "xla").iterdir())
    where, requested2, cached2, compiled2 = counts(demo(tmp_path))
    assert requested2 == requested and cached2 == requested2 and compiled2 == 0


def test_off_switches():
    args = cli._parser().parse_args([*DEMO, "--no-compile-cache"])
    assert cli._compile_cache(args) is None
    args = cli._parser().parse_args(DEMO)  # HAGFISH_COMPILE_CACHE=0 here (conftest)
    assert cli._compile_cache(args) is None


def test_a_file_is_not_a_cache_directory(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        hj.enable_compilation_cache(target)
    assert cli.main([*DEMO, "--compile-cache", str(target), "--out", str(tmp_path / "r")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_default_directory_follows_the_environment(monkeypatch, tmp_path):
    from hagfish_jax.shell import compile_cache

    monkeypatch.delenv("HAGFISH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_dir() == tmp_path / "hagfish_jax" / "xla"
    monkeypatch.setenv("HAGFISH_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.default_dir() == tmp_path / "mine"


def test_version():
    out = subprocess.run([sys.executable, "-m", "hagfish_cli", "--version"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == f"hagfish_jax {hj.__version__}"
