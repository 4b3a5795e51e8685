"""Test-session settings."""

import atexit
import os
import shutil
import tempfile

# `hagfish demo` keeps a persistent compilation cache in the user's cache directory by
# default; tests must not write there. tests/test_compile_cache.py turns it on for its
# own subprocesses, in a temporary directory.
os.environ["HAGFISH_COMPILE_CACHE"] = "0"

# The session's own compilation cache, in a temporary directory removed at exit: many
# tests (and the subprocesses of the drills and CLI tests) build the same programs, and
# JAX's persistent cache shares compiled programs across them by their HLO. Set before
# jax is imported, so jax and every subprocess read it from the environment.
_CACHE = tempfile.mkdtemp(prefix="hagfish-tests-xla-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# The suite compiles far more than it runs: hundreds of small programs, each run for a
# few windows. LLVM at optimisation level 1 compiles them faster (the controller tests
# took 42 s instead of 62 s; benchmarks/RESULTS.md, stop 21, has the trade-off: slower
# steady-state code, which the tests barely run). Semantics are unchanged. Subprocesses
# inherit it; a test that sets XLA_FLAGS for its own subprocess replaces it there.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1"
    ).strip()


import pytest  # noqa: E402


@pytest.fixture
def server():
    """A scripted OpenAI-compatible server on 127.0.0.1 (the LLM advisor tests)."""
    from _llm_server import LLMServer

    with LLMServer() as s:
        yield s
