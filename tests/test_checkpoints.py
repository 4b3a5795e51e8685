"""Orbax checkpoints: best + last k, atomic manifest, corrupt ones skipped."""

from __future__ import annotations

import json
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax.shell.loop import Checkpoints


def make_state(value, lr):
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    params = {"w": jnp.full((3,), value, jnp.float32)}
    return hj.set_hparams({"params": params, "opt": tx.init(params)}, {"learning_rate": lr})


LIKE = make_state(0.0, 1e-3)


def test_restore_best_brings_back_weights_and_hyperparameters(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=2)
    for w, (v, lr, s) in enumerate([(1.0, 0.01, 0.5), (2.0, 0.02, 0.9), (3.0, 0.03, 0.7)]):
        ck.save(w, make_state(v, lr), score=s, phase="ACTIVE")
    state, entry = ck.restore(LIKE)
    assert entry["window"] == 1 and entry["phase"] == "ACTIVE"
    np.testing.assert_array_equal(state["params"]["w"], 2.0)
    assert float(hj.get_hparams(state)["learning_rate"]) == np.float32(0.02)
    latest, entry = ck.restore(LIKE, "latest")
    assert entry["window"] == 2 and float(latest["params"]["w"][0]) == 3.0


def test_retention_keeps_the_best_and_the_last_k(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=2)
    scores = [0.2, 0.95, 0.3, 0.4, 0.5, 0.6]
    for w, s in enumerate(scores):
        ck.save(w, make_state(float(w), 1e-3), score=s)
    assert [e["window"] for e in ck.entries] == [1, 4, 5]
    dirs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert dirs == ["window_00000001", "window_00000004", "window_00000005"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["window"] for e in manifest["entries"]] == [1, 4, 5]
    # a new instance reads the manifest back
    again = Checkpoints(tmp_path, keep_last=2)
    assert again.best["window"] == 1 and again.latest["window"] == 5


def test_nan_scores_never_become_best(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=1)
    ck.save(0, make_state(0.0, 1e-3), score=0.1)
    ck.save(1, make_state(1.0, 1e-3), score=float("nan"))
    assert ck.best["window"] == 0


def test_corrupt_checkpoint_is_skipped_for_the_previous_good_one(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=3)
    ck.save(0, make_state(1.0, 1e-3), score=0.5)
    ck.save(1, make_state(2.0, 1e-3), score=0.9)
    # truncate every file of the best checkpoint
    for f in (tmp_path / "window_00000001").rglob("*"):
        if f.is_file():
            f.write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, entry = ck.restore(LIKE)
    assert entry["window"] == 0
    np.testing.assert_array_equal(state["params"]["w"], 1.0)
    assert any("could not be read" in str(w.message) for w in caught)


def test_interrupted_save_leaves_the_manifest_valid(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=2)
    ck.save(0, make_state(1.0, 1e-3), score=0.5)
    # a crash mid-write leaves a temporary directory and no manifest entry
    (tmp_path / ".tmp_window_00000001").mkdir()
    (tmp_path / ".tmp_window_00000001" / "partial").write_bytes(b"\x00")
    again = Checkpoints(tmp_path, keep_last=2)
    assert [e["window"] for e in again.entries] == [0]
    state, entry = again.restore(LIKE)
    assert entry["window"] == 0
    again.save(1, make_state(2.0, 1e-3), score=0.6)  # the stale temporary is replaced
    assert again.restore(LIKE, 1)[1]["window"] == 1


def test_validation_and_unknown_window(tmp_path):
    with pytest.raises(ValueError, match="keep_last"):
        Checkpoints(tmp_path, keep_last=0)
    ck = Checkpoints(tmp_path)
    assert ck.restore(LIKE) is None
    with pytest.raises(KeyError, match="window 7"):
        ck.restore(LIKE, 7)


def test_equal_scores_the_earliest_window_is_best(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=3)
    for w, s in enumerate([0.5, 0.9, 0.9, 0.9]):
        ck.save(w, make_state(float(w), 1e-3), score=s)
    assert ck.best["window"] == 1
    assert ck.restore(LIKE)[1]["window"] == 1


def test_a_nan_score_saved_first_is_stored_as_null_and_never_best(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=2)
    ck.save(0, make_state(0.0, 1e-3), score=float("nan"))
    ck.save(1, make_state(1.0, 1e-3), score=0.1)
    assert ck.entries[0]["score"] is None and ck.best["window"] == 1

    def strict(name):
        raise ValueError(f"manifest.json holds {name}: not valid JSON")

    manifest = json.loads((tmp_path / "manifest.json").read_text(), parse_constant=strict)
    assert [e["score"] for e in manifest["entries"]] == [None, 0.1]


def test_a_checkpoint_folder_removed_by_hand_leaves_the_manifest(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=3)
    for w in range(3):
        ck.save(w, make_state(float(w), 1e-3), score=0.1 * w)
    ck.close()
    shutil.rmtree(tmp_path / "window_00000002")
    again = Checkpoints(tmp_path, keep_last=3)
    assert [e["window"] for e in again.entries] == [0, 1]
    assert again.latest["window"] == 1 and again.best["window"] == 1


def test_a_rebuilt_manifest_trusts_no_checkpoint_under_another_name(tmp_path):
    ck = Checkpoints(tmp_path, keep_last=3)
    ck.save(0, make_state(0.0, 1e-3), score=0.1)
    ck.save(1, make_state(1.0, 1e-3), score=0.9)
    ck.close()
    # window 1's folder renamed: its entry names another folder, so it is not trusted
    (tmp_path / "window_00000001").rename(tmp_path / "window_00000007")
    (tmp_path / "manifest.json").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = Checkpoints(tmp_path, keep_last=3)
    assert any("rebuilt from 1 checkpoint" in str(w.message) for w in caught)
    assert [e["window"] for e in again.entries] == [0]
    assert again.restore(LIKE, "latest")[1]["window"] == 0


def test_restored_arrays_are_uncommitted_so_a_jitted_function_does_not_compile_again(
    tmp_path,
):
    f = jax.jit(lambda s: s["params"]["w"] * 2.0)
    state = make_state(1.0, 1e-3)
    f(state).block_until_ready()
    ck = Checkpoints(tmp_path)
    ck.save(0, state, score=0.5)
    restored, _ = ck.restore(LIKE)
    assert not any(x.committed for x in jax.tree.leaves(restored))
    compiles = []

    def listen(name, duration, **kwargs):
        if name.startswith("/jax/core/compile/"):
            compiles.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        np.testing.assert_array_equal(f(restored), 2.0)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
