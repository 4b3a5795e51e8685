"""A controller directory gives back what was saved last; spaces a controller cannot
save are refused before any training; text tasks read every token id of every split."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax.control import controller as C
from hagfish_jax.control import data, meta, tasks
from hagfish_jax.tasks.classification import Split

pytestmark = pytest.mark.timeout(300)

SPACE_A = hj.Space(learning_rate=hj.LogUniform(1e-5, 1e-1), dropout_rate=hj.Uniform(0.1, 0.7))
SPACE_B = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-2), weight_decay=hj.Uniform(0.0, 0.1))
SPEC_A = C.Spec(SPACE_A, {"learning_rate": 1e-3, "dropout_rate": 0.5}, step=0.125, horizon=11)
SPEC_B = C.Spec(SPACE_B, {"learning_rate": 1e-3, "weight_decay": 0.0}, step=0.25, horizon=5)


def _same(x, y) -> bool:
    return all(
        np.array_equal(np.asarray(u), np.asarray(v))
        for u, v in zip(jax.tree.leaves(x.params), jax.tree.leaves(y.params))
    )


@pytest.mark.parametrize("second_spec", [SPEC_B, SPEC_A], ids=["other-spec", "same-spec"])
def test_saving_over_an_older_controller_loads_the_one_saved_last(tmp_path, second_spec):
    # the older controller has more iterations: its checkpoints must not win on load
    old = C.Controller(C.fresh_params(SPEC_A, jax.random.key(1)), SPEC_A, iterations=100)
    new = C.Controller(C.fresh_params(second_spec, jax.random.key(2)), second_spec, iterations=20)
    old.save(tmp_path)
    (tmp_path / meta.TRAINING_FILE).write_text(json.dumps({"setting": {"hold_out": []}}))
    new.save(tmp_path)
    got = C.load(tmp_path)
    assert got.spec == second_spec and got.iterations == 20
    assert _same(got, new) and not _same(got, old)
    # the older controller's training record does not describe the new one
    assert not (tmp_path / meta.TRAINING_FILE).exists()


def test_load_refuses_a_spec_file_that_does_not_match_its_checkpoint(tmp_path):
    C.Controller(C.fresh_params(SPEC_A, jax.random.key(1)), SPEC_A, iterations=3).save(tmp_path)
    # controller.json rewritten by hand (or a save cut short): not loaded silently
    (tmp_path / C.SPEC_FILE).write_text(json.dumps(SPEC_B.to_json()))
    with pytest.raises(ValueError, match="does not match"):
        C.load(tmp_path)


def _tiny_bank(space, defaults):
    return tasks.make_task(
        [data.synthetic_split(0, n_features=6, n_samples=120)],
        hparam_space=space, defaults=defaults, steps_per_window=1,
    )


TINY_SPACE = hj.Space(
    learning_rate=hj.LogUniform(1e-5, 1e-1),
    batch_size=hj.IntUniform(8, 16, dynamic=True),
    dropout_rate=hj.Uniform(0.1, 0.7),
    num_layers=hj.IntUniform(1, 2, dynamic=True),
    units=hj.IntUniform(8, 16, dynamic=True),
)
TINY = meta.MetaConfig(runs=2, windows=2, num_minibatches=1, update_epochs=1)


def test_meta_train_resumes_into_its_own_directory(tmp_path):
    bank = _tiny_bank(TINY_SPACE, {"batch_size": 8, "units": 8})
    first = meta.meta_train(bank, 2, TINY, directory=tmp_path, save_every=1)
    assert C.load(tmp_path).iterations == 2 and _same(C.load(tmp_path), first.controller)
    more = meta.meta_train(bank, 3, TINY, directory=tmp_path, save_every=1)
    assert [r["iteration"] for r in more.history] == [3]
    back = C.load(tmp_path)
    assert back.iterations == 3 and _same(back, more.controller)
    # the previous checkpoint stays as a fallback while a training continues
    manifest = json.loads((tmp_path / "checkpoints" / "manifest.json").read_text())
    assert [e["window"] for e in manifest["entries"]] == [2, 3]
    assert (tmp_path / meta.TRAINING_FILE).is_file()


def test_a_choice_dimension_is_refused_before_any_training(tmp_path):
    space = hj.Space(
        learning_rate=hj.LogUniform(1e-5, 1e-1),
        batch_size=hj.IntUniform(8, 16, dynamic=True),
        dropout_rate=hj.Choice([0.1, 0.3, 0.5], dynamic=True),
        num_layers=hj.IntUniform(1, 2, dynamic=True),
        units=hj.IntUniform(8, 16, dynamic=True),
    )
    bank = _tiny_bank(space, {"batch_size": 8, "units": 8, "dropout_rate": 0.3})
    done = []
    out = tmp_path / "ctrl"
    for directory in (out, None):
        with pytest.raises(ValueError, match="intervals only; dropout_rate is a Choice"):
            meta.meta_train(bank, 3, TINY, directory=directory, save_every=2,
                            callback=lambda r: done.append(r["iteration"]))
    assert done == [] and not out.exists()


def _text_split(unseen_id: int) -> Split:
    rng = np.random.default_rng(0)
    xtr = rng.integers(1, 50, (64, 6)).astype(np.int32)  # training ids 1..49
    ytr = rng.integers(0, 2, 64).astype(np.int32)
    xva = xtr[:16].copy()
    xva[0, 0] = unseen_id  # a validation row holds an id training never has
    xte = xtr[16:32].copy()
    xte[1, 2] = unseen_id + 1
    return Split(xtr, ytr, xva, ytr[:16], xte, ytr[16:32])


def test_text_ids_unseen_in_training_give_finite_losses():
    task = tasks.make_task(_text_split(60), "text", steps_per_window=1)
    state = task.init(jax.random.key(0), task.default_hparams)
    ev = task.evaluate(state)
    assert np.isfinite(float(ev["val_loss"])) and np.isfinite(float(ev["train_loss"]))
    test = task.test(state)
    assert all(np.isfinite(float(v)) for v in jax.tree.leaves(test))


def test_text_vocab_size_too_small_for_the_ids_is_refused():
    with pytest.raises(ValueError, match="vocab_size"):
        tasks.make_task(_text_split(60), "text", vocab_size=50)
    with pytest.raises(ValueError, match="token ids"):
        tasks.make_task(_text_split(-3), "text")


def test_a_save_cut_short_never_loads_one_controller_under_the_others_spec(
    tmp_path, monkeypatch
):
    from hagfish_jax.shell import _files

    old = C.Controller(C.fresh_params(SPEC_A, jax.random.key(1)), SPEC_A, iterations=100)
    old.save(tmp_path)
    real = _files.write_atomic

    def killed(path, text):  # the process dies as it would write controller.json
        if path.name == C.SPEC_FILE:
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(_files, "write_atomic", killed)
    new = C.Controller(C.fresh_params(SPEC_B, jax.random.key(2)), SPEC_B, iterations=20)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="does not match"):
        C.load(tmp_path)  # the old spec beside the new weights: refused, not mixed
    new.save(tmp_path)  # saved again, whole
    assert _same(C.load(tmp_path), new)


def test_a_save_killed_while_writing_its_checkpoint_leaves_the_old_controller(
    tmp_path, monkeypatch
):
    from hagfish_jax.shell.loop.checkpoints import Checkpoints

    old = C.Controller(C.fresh_params(SPEC_A, jax.random.key(1)), SPEC_A, iterations=100)
    old.save(tmp_path)

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoints, "save", killed)
    new = C.Controller(C.fresh_params(SPEC_B, jax.random.key(2)), SPEC_B, iterations=20)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path)
    monkeypatch.undo()
    back = C.load(tmp_path)
    assert back.spec == SPEC_A and back.iterations == 100 and _same(back, old)
