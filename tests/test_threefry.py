"""``hj.unroll_threefry()``: JAX's random numbers lowered without a loop on the CPU give
the same bits, in plain draws, under vmap and through a tuned population program, and
``hj.unroll_threefry(False)`` puts the loop back. The check runs in a fresh process,
since the lowering is process-wide; ``hagfish demo`` leaves JAX's loop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import hagfish_jax as hj
    from hagfish_jax.shell import threefry

    DRAWS = [
        lambda k: jax.random.bits(k, (1000,)),
        lambda k: jax.random.uniform(k, (7, 5)),
        lambda k: jax.random.normal(jax.random.fold_in(k, 3), (33,)),
        lambda k: jax.random.key_data(jax.random.split(k, 9)),
        lambda k: jax.vmap(lambda kk: jax.random.bits(kk, (3, 4)))(jax.random.split(k, 4)),
        lambda k: jax.random.bits(k, (5,), jnp.uint8),
        lambda k: jax.random.permutation(k, 50),
    ]

    def task():
        def train_window(s, k):  # a window's update is a random step
            return {"w": s["w"] + 0.1 * jax.random.normal(k, (3,))}, {}
        return hj.Task(init=lambda k, hp: {"w": jax.random.normal(k, (3,))},
                       train_window=train_window,
                       evaluate=lambda s: {"score": -jnp.sum(s["w"] ** 2)},
                       space=None, default_hparams={})

    def sample():
        key = jax.random.key(11)
        draws = [np.asarray(jax.jit(lambda k, f=f: f(k))(key)).tolist() for f in DRAWS]
        prog = hj.program.build(task(), hj.fixed(), population=4, windows=3)
        run = jax.jit(lambda k: hj.program.scan(prog, prog.init(k), 3))
        carry, rows = run(jax.random.key(5))
        text = jax.jit(lambda k: jax.random.bits(k, (8,))).lower(key).as_text()
        return {"draws": draws, "scores": np.asarray(rows["score"]).tolist(),
                "best": float(carry.best.score), "looped": "while" in text,
                "unrolled": threefry.unrolled()}

    before = sample()
    assert hj.unroll_threefry() is True
    after = sample()
    assert threefry.unroll(False) is False
    back = sample()
    print(json.dumps([before, after, back]))
    """
)


def run() -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_unrolled_threefry_gives_the_same_bits_and_results():
    before, after, back = run()
    assert before["looped"] and not before["unrolled"]  # JAX's loop, until asked
    assert not after["looped"] and after["unrolled"]
    assert back["looped"] and not back["unrolled"]
    for key in ("draws", "scores", "best"):
        assert before[key] == after[key] == back[key], key
