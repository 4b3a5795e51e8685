"""flax NNX: hyperparameters inside ``nnx.Optimizer`` and NNX graph state, the NNX task
(``hagfish_jax.tasks.nnx_task``) trained as a vmapped population with rollback, and
``examples/nnx_digits.py`` at a small size."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import hagfish_jax as hj
from hagfish_jax.tasks import nnx_task

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nnx_digits.py"
N = 4
STEPS = 16  # optimizer steps per window in the example at test size


def load_example():
    spec = importlib.util.spec_from_file_location("example_nnx_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_var(x):
    return isinstance(x, nnx.Variable)


def adam():
    return optax.inject_hyperparams(optax.adam, hyperparam_dtype=jnp.float32)(learning_rate=1e-3)


# -- get_hparams / set_hparams on NNX objects --------------------------------------------
def test_nnx_optimizer_read_and_write_keep_its_variables_and_structure():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, adam(), wrt=nnx.Param)
    hp = hj.get_hparams(opt)
    assert isinstance(hp["learning_rate"], jax.Array)  # the array, not its variable
    assert float(hp["learning_rate"]) == pytest.approx(1e-3)
    new = hj.set_hparams(opt, {"learning_rate": 0.25})
    assert jax.tree.structure(new) == jax.tree.structure(opt)  # variables stay variables
    var = new.opt_state.hyperparams["learning_rate"]
    assert type(var) is type(opt.opt_state.hyperparams["learning_rate"])
    assert var.get_value().dtype == jnp.float32 and not var.get_value().weak_type
    assert float(hj.get_hparams(new)["learning_rate"]) == 0.25
    assert float(hj.get_hparams(opt)["learning_rate"]) == pytest.approx(1e-3)  # input intact
    # no variable is shared: updating the new optimizer in place leaves the old one alone
    old_ids = {id(v) for v in jax.tree.leaves(opt, is_leaf=is_var)}
    assert not old_ids & {id(v) for v in jax.tree.leaves(new, is_leaf=is_var)}
    # its opt_state alone works too, and a scalar broadcasts over a vmapped population
    assert set(hj.get_hparams(opt.opt_state)) == set(hp)
    make = lambda k: nnx.Optimizer(nnx.Linear(3, 2, rngs=nnx.Rngs(k)), adam(), wrt=nnx.Param)  # noqa: E731
    pop = jax.vmap(make)(jax.random.split(jax.random.key(0), 3))
    pop = hj.set_hparams(pop, {"learning_rate": jnp.array([0.1, 0.2, 0.3])})
    np.testing.assert_allclose(hj.get_hparams(pop)["learning_rate"], [0.1, 0.2, 0.3])


def test_nnx_optimizer_takes_new_values_in_a_jitted_step_without_retracing():
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
    sgd = optax.inject_hyperparams(optax.sgd, hyperparam_dtype=jnp.float32)(learning_rate=0.1)
    traces = []

    @jax.jit
    def step(model, opt):  # NNX objects are pytrees: pass them in, return them
        traces.append(1)
        grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        opt.update(model, grads)
        return model, opt

    deltas = []
    for lr in (0.1, 0.0, 0.05):
        model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        opt = hj.set_hparams(nnx.Optimizer(model, sgd, wrt=nnx.Param), {"learning_rate": lr})
        w0 = model.kernel.get_value()
        model, opt = step(model, opt)
        deltas.append(float(jnp.abs(model.kernel.get_value() - w0).sum()))
    assert len(traces) == 1
    assert deltas[1] == 0.0 and deltas[0] == pytest.approx(2 * deltas[2], rel=1e-5)


def test_nnx_split_state_of_model_and_optimizer_reads_and_writes():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    tx = optax.chain(optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=1e-4), adam())
    graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
    assert {"learning_rate", "weight_decay"} <= set(hj.get_hparams(state))
    new = hj.set_hparams(state, {"learning_rate": 0.5, "weight_decay": 0.01})
    assert jax.tree.structure(new) == jax.tree.structure(state)
    _, opt = nnx.merge(graphdef, new)  # nnx takes the written state back
    assert float(opt.opt_state[1].hyperparams["learning_rate"].get_value()) == 0.5
    assert float(opt.opt_state[0].hyperparams["weight_decay"].get_value()) == pytest.approx(0.01)
    with pytest.raises(KeyError, match="no injected state holds"):
        hj.set_hparams(state, {"momentum": 0.9})


# -- the example: the NNX task as a one-run program and a vmapped PBT population ------------
@pytest.fixture(scope="module")
def example_run():
    """``examples/nnx_digits.py`` at test size: windows=2, so the population's compiled
    ``half`` is one window, and the tests below go on with it (nothing compiles again)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        out = load_example().run(n=N, windows=2, steps_per_window=STEPS, hidden=16)
    return {**out, "printed": printed.getvalue()}


def trajectory(pop, key, windows=3):
    carry, scores = pop["init"](jax.random.key(key)), []
    for _ in range(windows):
        carry, row = pop["half"](carry)
        scores.append(row["score"][0])
    return carry, np.stack(scores)


def test_nnx_example_runs_small(example_run):
    with pytest.raises(ValueError, match="even number"):
        load_example().run(windows=3)
    single, pop = example_run["single"], example_run["population"]
    assert single["scores"].shape == (2,) and single["best_score"] > 0.2  # chance is 0.1
    assert 0.0 <= single["test_accuracy"] <= 1.0
    assert pop["scores"].shape == (2, N) and pop["best_score"] > 0.3
    # window 1: member 0 trained with learning rate 1e3, scored NaN, was restored, and
    # PBT (ready after 2 windows) replaced it with a copy of a good member
    assert pop["diverged_window"] == 1 and np.isnan(pop["scores"][1, 0])
    assert bool(pop["rollback"][1, 0]) and pop["parents"][1, 0] != 0
    assert pop["finite"] and pop["half"]._cache_size() == 1
    assert 0.0 <= pop["test_accuracy"] <= 1.0 and isinstance(pop["model"], nnx.Module)
    assert pop["model"](jnp.ones((2, 64))).shape == (2, 10)
    printed = example_run["printed"]
    assert "rolled back to its snapshot: True" in printed and "best member" in printed


def test_nnx_population_trains_above_chance_and_same_key_same_trajectory(example_run):
    pop = example_run["population"]
    carry, scores = trajectory(pop, 0)
    assert scores.shape == (3, N)
    assert float(carry.best.score) > 0.6 and np.nanmax(scores[-1]) > np.nanmax(scores[0])
    np.testing.assert_array_equal(trajectory(pop, 0)[1], scores)
    assert not np.array_equal(trajectory(pop, 1)[1], scores)


def test_nnx_hparams_change_without_recompiling_and_take_effect(example_run):
    pop = example_run["population"]
    carry = pop["init"](jax.random.key(2))
    for lrs in ([1e-3, 2e-3, 3e-3, 4e-3], [0.1, 0.01, 0.001, 0.05]):
        hp = {"learning_rate": jnp.array(lrs), "label_smoothing": jnp.full(N, 0.1)}
        _, row = pop["half"](carry._replace(state=hj.set_hparams(carry.state, hp)))
        np.testing.assert_allclose(row["learning_rate"][0], lrs, rtol=1e-6)
        np.testing.assert_allclose(row["label_smoothing"][0], 0.1, rtol=1e-6)
    assert pop["half"]._cache_size() == 1 and pop["init"]._cache_size() == 1


def test_nnx_divergent_member_is_restored_to_its_snapshot_exactly(example_run):
    pop = example_run["population"]
    carry = pop["init"](jax.random.key(3))
    member = lambda tree, i=1: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
    lr = hj.get_hparams(carry.state)["learning_rate"]
    broken = carry._replace(
        state=hj.set_hparams(carry.state, {"learning_rate": lr.at[1].set(jnp.inf)})
    )
    after, row = pop["half"](broken)  # window 0: nobody is compared yet, nobody copied
    assert row["rollback"][0].tolist() == [False, True, False, False]
    assert np.isnan(row["score"][0, 1]) and row["parent"][0].tolist() == list(range(N))
    restored, snapshot = member(after.state), member(carry.snap.state)
    # the weights and the optimizer's moments come back exactly ...
    chex.assert_trees_all_equal(restored.params, snapshot.params)
    chex.assert_trees_all_equal(restored.opt_state.inner_state, snapshot.opt_state.inner_state)
    # ... the clock and the model's own random streams do not (no replayed dropout masks)
    steps = STEPS
    count = lambda s: int(s.rngs["dropout"]["rngs"]["count"])  # noqa: E731
    assert int(restored.step) == steps and count(restored) == count(snapshot) + steps
    # the other members trained on
    for i in (0, 2, 3):
        assert not np.array_equal(
            member(after.state, i).params["out"]["kernel"],
            member(carry.state, i).params["out"]["kernel"],
        )


def test_nnx_task_refuses_bad_input_before_any_work():
    x, y = jnp.ones((10, 3)), jnp.zeros(10)
    ok = dict(
        model=lambda rngs: nnx.Linear(3, 1, rngs=rngs),
        tx=optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
        loss=lambda m, b, hp: jnp.mean(m(b[0])),
        data=(x, y),
        evaluate=lambda m: {"score": jnp.zeros(())},
        space=hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0)),
        default_hparams={"learning_rate": 0.1},
        batch_size=4,
    )

    def bad(match, error=ValueError, **changes):
        with pytest.raises(error, match=match):
            nnx_task.make_task(**{**ok, **changes})

    bad("injects no hyperparameters", tx=optax.sgd(0.1))
    bad("held neither by tx", default_hparams={"learning_rate": 0.1, "dropout": 0.1})
    bad("held by tx already", default_hparams={"learning_rate": 0.1}, extra=("learning_rate",))
    bad("have no default", extra=("label_smoothing",))
    bad("leading example axis", data=(x, jnp.zeros(9)))
    bad(r"batch_size must be in \[1, 10\]", batch_size=11)
    bad("steps_per_window", steps_per_window=0)
    bad("must return an nnx.Module", TypeError, model=lambda rngs: jnp.zeros(3))
    bad("no value for", default_hparams={})  # the Task protocol's own check
    task = nnx_task.make_task(**{**ok, "evaluate": lambda m: {"accuracy": jnp.zeros(())}})
    with pytest.raises(ValueError, match="evaluate must return a dict with 'score'"):
        task.evaluate(task.init(jax.random.key(0), {}))
