"""Every tuner: Python loop, lax.scan and vmap agree; no retrace; tuner-specific rules."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj

SPACE = hj.Space(
    learning_rate=hj.LogUniform(1e-4, 1e-1),
    b1=hj.Uniform(0.5, 0.99),
    width=hj.IntUniform(16, 256),  # structural: tuners must leave it alone
)
DYN = SPACE.subspace(SPACE.dynamic)
HP0 = {"learning_rate": 1e-3, "b1": 0.9, "width": 64.0}
OPT = jnp.array([0.8, 0.25])  # optimum in the unit space of DYN (b1, learning_rate)


def synthetic_score(hp, t):
    """A smooth objective with small deterministic noise; higher is better."""
    u = DYN.to_unit({n: hp[n] for n in DYN.names})
    noise = 1e-3 * jnp.sin(7.0 * t.astype(jnp.float32) + 3.0 * u[0])
    return 1.0 - jnp.sum((u - OPT) ** 2) + noise


TUNERS = {
    "fixed": lambda: hj.fixed(),
    "plateau": lambda: hj.plateau(patience=2, space=SPACE),
    "finite_difference": lambda: hj.finite_difference(SPACE),
    "spsa": lambda: hj.spsa(SPACE),
    "guard_fd": lambda: hj.guard(hj.finite_difference(SPACE), warmup=1, space=SPACE),
    "guard_spsa": lambda: hj.guard(hj.spsa(SPACE), warmup=2, tune_every=2, space=SPACE),
    "guard_bayes": lambda: hj.guard(
        hj.bayes(SPACE, capacity=8, candidates=16, fit_steps=3, horizon=100), warmup=1, space=SPACE
    ),
}
WINDOWS = 30


def python_loop(tuner, key, hp0, windows=WINDOWS):
    state = tuner.init(key, hp0)
    hp = hj.as_hparams(hp0)
    update = jax.jit(tuner.update)
    trail = []
    for t in range(windows):
        proposal, state = update(state, hj.Observation(score=synthetic_score(hp, jnp.int32(t))))
        hp = proposal.hparams
        trail.append(hp)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trail)


def scan_run(tuner, key, hp0, windows=WINDOWS):
    def body(carry, t):
        state, hp = carry
        proposal, state = tuner.update(state, hj.Observation(score=synthetic_score(hp, t)))
        return (state, proposal.hparams), proposal.hparams

    state = tuner.init(key, hp0)
    _, trail = jax.lax.scan(body, (state, hj.as_hparams(hp0)), jnp.arange(windows))
    return trail


@pytest.fixture(scope="module", params=sorted(TUNERS))
def runs(request):
    tuner = TUNERS[request.param]()
    key = jax.random.key(3)
    loop = python_loop(tuner, key, HP0)
    scanned = jax.jit(lambda k: scan_run(tuner, k, HP0))(key)
    return request.param, tuner, loop, scanned


def test_loop_equals_scan(runs):
    _, _, loop, scanned = runs
    chex.assert_trees_all_close(loop, scanned, rtol=1e-5)


def test_vmap_over_eight_members_matches_single_runs(runs):
    _, tuner, _, _ = runs
    keys = jax.random.split(jax.random.key(11), 8)
    hp0s = {
        k: jnp.linspace(0.5, 1.5, 8) * v if k != "width" else jnp.full(8, v) for k, v in HP0.items()
    }
    hp0s["b1"] = jnp.clip(hp0s["b1"], 0.5, 0.99)
    batched = jax.jit(jax.vmap(lambda k, h: scan_run(tuner, k, h)))(keys, hp0s)
    for i in (0, 5):
        single = jax.jit(lambda k, h: scan_run(tuner, k, h))(
            keys[i], {k: v[i] for k, v in hp0s.items()}
        )
        chex.assert_trees_all_close({k: v[i] for k, v in batched.items()}, single, rtol=1e-5)


def test_same_key_same_trajectory_and_in_space(runs):
    name, tuner, loop, _ = runs
    chex.assert_trees_all_equal(loop, python_loop(tuner, jax.random.key(3), HP0))
    assert SPACE.contains({k: np.asarray(v) for k, v in loop.items()}), name
    np.testing.assert_array_equal(loop["width"], 64.0)  # structural untouched


def test_no_retrace_after_first_call(runs):
    _, tuner, _, _ = runs
    chex.clear_trace_counter()  # the same function is defined for every tuner

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(state, obs):
        return tuner.update(state, obs)

    state = tuner.init(jax.random.key(0), HP0)
    hp = hj.as_hparams(HP0)
    for t in range(12):
        proposal, state = update(state, hj.Observation(score=synthetic_score(hp, jnp.int32(t))))
        hp = proposal.hparams
    # Also a NaN must not retrace.
    proposal, state = update(state, hj.Observation(score=jnp.float32(np.nan)))


def test_proposal_protocol_shapes(runs):
    _, tuner, _, _ = runs
    state = tuner.init(jax.random.key(0), HP0)
    proposal, _ = tuner.update(state, hj.Observation(score=jnp.float32(0.3)))
    assert set(proposal.hparams) == set(HP0)
    assert all(v.dtype == jnp.float32 and not v.weak_type for v in proposal.hparams.values())
    assert proposal.parents.dtype == jnp.int32 and int(proposal.parents) == hj.KEEP
    assert proposal.rollback.dtype == jnp.bool_


# -- finite difference ---------------------------------------------------------------

FD_SPACE = hj.Space(x=hj.Uniform(0.0, 1.0), y=hj.Uniform(0.0, 1.0))


def fd_step(tuner, state, hp, score):
    proposal, state = tuner.update(state, hj.Observation(score=jnp.float32(score)))
    return proposal.hparams, state


def test_fd_probe_changes_exactly_one_dimension_round_robin():
    tuner = hj.finite_difference(FD_SPACE, step=0.1)
    state = tuner.init(jax.random.key(0), {"x": 0.5, "y": 0.5})
    probe, state = fd_step(tuner, state, None, 1.0)  # baseline
    assert float(probe["x"]) == pytest.approx(0.6) and float(probe["y"]) == 0.5
    commit, state = fd_step(tuner, state, None, 0.0)  # worse probe
    assert float(commit["x"]) == pytest.approx(0.4) and float(commit["y"]) == 0.5
    probe2, state = fd_step(tuner, state, None, 1.0)  # baseline of the commit
    assert float(probe2["x"]) == pytest.approx(0.4) and float(probe2["y"]) == pytest.approx(0.6)


def test_fd_keeps_a_better_probe_and_shrinks_step():
    tuner = hj.finite_difference(FD_SPACE, step=0.1, shrink=0.5, min_step=0.01)
    state = tuner.init(jax.random.key(0), {"x": 0.5, "y": 0.5})
    _, state = fd_step(tuner, state, None, 1.0)
    commit, state = fd_step(tuner, state, None, 2.0)  # better probe
    assert float(commit["x"]) == pytest.approx(0.6)
    assert float(state.steps[0]) == pytest.approx(0.05)
    assert float(state.steps[1]) == pytest.approx(0.1)


def test_fd_grows_step_on_plateau_within_max():
    tuner = hj.finite_difference(FD_SPACE, step=0.2, grow=2.0, max_step=0.3)
    state = tuner.init(jax.random.key(0), {"x": 0.5, "y": 0.5})
    _, state = fd_step(tuner, state, None, 1.0)
    _, state = fd_step(tuner, state, None, 1.0)  # exactly flat
    assert float(state.steps[0]) == pytest.approx(0.3)  # 0.4 capped at max_step


def test_fd_worse_probe_is_reversed_at_the_upper_bound():
    tuner = hj.finite_difference(FD_SPACE, step=0.1)
    state = tuner.init(jax.random.key(0), {"x": 0.95, "y": 0.5})
    probe, state = fd_step(tuner, state, None, 1.0)
    assert float(probe["x"]) == pytest.approx(1.0)  # clipped at the bound
    commit, state = fd_step(tuner, state, None, 0.5)  # worse
    assert float(commit["x"]) == pytest.approx(0.9)  # the other side of 0.95

    # Sitting exactly on the upper bound, the probe points inwards.
    state = tuner.init(jax.random.key(0), {"x": 1.0, "y": 0.5})
    probe, state = fd_step(tuner, state, None, 1.0)
    assert float(probe["x"]) == pytest.approx(0.9)


def test_fd_nan_probe_is_treated_as_worse():
    tuner = hj.finite_difference(FD_SPACE, step=0.1)
    state = tuner.init(jax.random.key(0), {"x": 0.5, "y": 0.5})
    _, state = fd_step(tuner, state, None, 1.0)
    commit, state = fd_step(tuner, state, None, np.nan)
    assert float(commit["x"]) == pytest.approx(0.4)


def test_fd_approaches_the_optimum_of_a_quadratic():
    opt = jnp.array([0.8, 0.25])
    tuner = hj.finite_difference(FD_SPACE, step=0.1)
    hp = {"x": jnp.float32(0.1), "y": jnp.float32(0.9)}
    state = tuner.init(jax.random.key(0), hp)
    update = jax.jit(tuner.update)

    def dist(h):
        return float(jnp.linalg.norm(FD_SPACE.to_unit(h) - opt))

    start = dist(hp)
    for _ in range(120):
        score = -jnp.sum((FD_SPACE.to_unit(hp) - opt) ** 2)
        proposal, state = update(state, hj.Observation(score=score))
        hp = proposal.hparams
    assert dist(hp) < 0.1 * start


def test_fd_log_dimension_moves_multiplicatively():
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))  # 3 decades
    tuner = hj.finite_difference(space, step=1.0 / 3.0, max_step=0.5)
    state = tuner.init(jax.random.key(0), {"learning_rate": 1e-3})
    probe, _ = tuner.update(state, hj.Observation(score=jnp.float32(0.0)))
    assert float(probe.hparams["learning_rate"]) == pytest.approx(1e-2, rel=1e-4)


def test_fd_rejects_bad_configuration():
    with pytest.raises(ValueError, match="step"):
        hj.finite_difference(FD_SPACE, step=0.5, max_step=0.3)
    with pytest.raises(ValueError, match="shrink"):
        hj.finite_difference(FD_SPACE, shrink=1.5)
    with pytest.raises(ValueError, match="structural"):
        hj.finite_difference(SPACE, names=["width"])
    with pytest.raises(ValueError, match="unknown"):
        hj.finite_difference(SPACE, names=["momentum"])
    with pytest.raises(ValueError, match="lack"):
        hj.finite_difference(FD_SPACE).init(jax.random.key(0), {"x": 0.5})


# -- SPSA --------------------------------------------------------------------------------


def test_spsa_trajectory_invariant_to_score_scale():
    tuner = hj.spsa(DYN)
    update = jax.jit(tuner.update)

    def run(scale):
        state = tuner.init(jax.random.key(5), HP0)
        hp = hj.as_hparams(HP0)
        out = []
        for t in range(40):
            score = scale * synthetic_score(hp, jnp.int32(t))
            proposal, state = update(state, hj.Observation(score=score))
            hp = proposal.hparams
            out.append(DYN.to_unit({n: hp[n] for n in DYN.names}))
        return np.stack(out)

    np.testing.assert_allclose(run(1.0), run(1000.0), atol=1e-4)
    assert not np.allclose(run(1.0)[0], run(1.0)[-1])  # it does move


def test_spsa_improves_and_stays_in_bounds():
    tuner = hj.spsa(DYN, a=0.1)
    far = {"learning_rate": 0.05, "b1": 0.55, "width": 64.0}
    trail = jax.jit(lambda k: scan_run(tuner, k, far, windows=200))(jax.random.key(1))
    assert SPACE.contains({k: np.asarray(v) for k, v in trail.items()})
    first = synthetic_score({k: v[0] for k, v in trail.items()}, jnp.int32(0))
    last = synthetic_score({k: v[-1] for k, v in trail.items()}, jnp.int32(0))
    assert float(first) < 0.6 and float(last) > 0.97


def test_spsa_nan_side_counts_as_worse():
    space = hj.Space(x=hj.Uniform(0.0, 1.0))
    tuner = hj.spsa(space, a=0.1, c=0.05)
    state = tuner.init(jax.random.key(0), {"x": 0.5})
    plus, state = tuner.update(state, hj.Observation(score=jnp.float32(0.0)))  # start
    minus, state = tuner.update(state, hj.Observation(score=jnp.float32(np.nan)))  # + side NaN
    _, state = tuner.update(state, hj.Observation(score=jnp.float32(1.0)))  # - side fine
    moved = float(state.theta[0]) - 0.5
    plus_dir = np.sign(float(plus.hparams["x"]) - 0.5)
    assert moved != 0 and np.sign(moved) == -plus_dir


# -- plateau ------------------------------------------------------------------------------


def test_plateau_reduces_with_negative_scores_and_resets_on_improvement():
    tuner = hj.plateau(patience=2, factor=0.5, threshold=0.01)
    state = tuner.init(jax.random.key(0), {"learning_rate": 0.1})
    lrs = []
    # -10 -> -9 improves (a naive best * (1 + threshold) rule would get this wrong).
    for s in [-10.0, -9.0, -9.0, -9.0, -8.0, -8.0, -8.0]:
        p, state = tuner.update(state, hj.Observation(score=jnp.float32(s)))
        lrs.append(round(float(p.hparams["learning_rate"]), 6))
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]


def test_plateau_nan_never_improves_and_respects_min_value():
    tuner = hj.plateau(patience=1, factor=0.5, min_value=0.03)
    state = tuner.init(jax.random.key(0), {"learning_rate": 0.1})
    p, state = tuner.update(state, hj.Observation(score=jnp.float32(1.0)))
    for _ in range(4):
        p, state = tuner.update(state, hj.Observation(score=jnp.float32(np.nan)))
    assert float(p.hparams["learning_rate"]) == pytest.approx(0.03)


def test_plateau_cooldown_suspends_judgement():
    tuner = hj.plateau(patience=1, factor=0.5, cooldown=2)
    state = tuner.init(jax.random.key(0), {"learning_rate": 0.8})
    lrs = []
    for _ in range(6):
        p, state = tuner.update(state, hj.Observation(score=jnp.float32(0.0)))
        lrs.append(round(float(p.hparams["learning_rate"]), 6))
    # first window sets best; then reduce, wait two windows, reduce again.
    assert lrs == [0.8, 0.4, 0.4, 0.4, 0.2, 0.2]


def test_plateau_validation():
    with pytest.raises(ValueError, match="factor"):
        hj.plateau(factor=1.5)
    with pytest.raises(ValueError, match="patience"):
        hj.plateau(patience=0)


def test_fd_probes_inwards_from_a_log_bound_under_jit_too():
    # under jit a LogUniform's upper bound maps to 0.99999994 in unit space, not 1.0
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))
    tuner = hj.finite_difference(space, step=0.1)
    update = jax.jit(tuner.update)
    state = tuner.init(jax.random.key(0), {"learning_rate": 1.0})
    probe, _ = update(state, hj.Observation(score=jnp.float32(1.0)))
    assert float(probe.hparams["learning_rate"]) == pytest.approx(10 ** -0.4, rel=1e-4)


def test_fd_takes_a_finite_probe_over_a_diverged_baseline():
    tuner = hj.finite_difference(FD_SPACE, step=0.1)
    state = tuner.init(jax.random.key(0), {"x": 0.5, "y": 0.5})
    probe, state = fd_step(tuner, state, None, np.nan)  # the starting point diverged
    commit, state = fd_step(tuner, state, None, 1.0)  # the probe trained
    assert float(commit["x"]) == pytest.approx(float(probe["x"]))  # kept, not mirrored


@pytest.mark.parametrize("make", [hj.finite_difference, hj.spsa, hj.bayes])
def test_a_nan_starting_value_is_refused(make):
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        make(space).init(jax.random.key(0), {"learning_rate": float("nan")})


def test_plateau_never_raises_a_value_and_refuses_structural_names():
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0), width=hj.IntUniform(8, 64))
    for tuner, lr in ((hj.plateau(patience=1, min_value=1e-3), 1e-5),
                      (hj.plateau(patience=1, space=space), 1e-5)):
        state = tuner.init(jax.random.key(0), {"learning_rate": lr})
        for score in (1.0, 1.0, 1.0):
            p, state = tuner.update(state, hj.Observation(score=jnp.float32(score)))
        assert float(p.hparams["learning_rate"]) <= lr  # a reduction, never a rise
    with pytest.raises(ValueError, match="structural"):
        hj.plateau(names=("width",), space=space)
