"""Population-based training written by hand: 16 MLPs on digits as one jitted program.

Each generation trains every member for one epoch (vmap), evaluates on the
validation split, lets ``hj.pbt`` pick who copies whom, copies weights with one
gather (``exploit``) and writes the explored hyperparameters into the optimizer
states (``set_hparams``). The whole run is one ``lax.scan``, compiled once.

    python examples/pbt_digits.py          # needs: pip install 'hagfish-jax[tasks]'
"""

import jax
import jax.numpy as jnp

import hagfish_jax as hj
from hagfish_jax.tasks import digits


def run(n=16, generations=20, seed=0, steps_per_window=None, hidden=(64,)):
    task = digits.make_task(
        digits.load_digits_split(seed), steps_per_window=steps_per_window, hidden=hidden
    )
    tuner = hj.pbt(task.space, fraction=0.25)

    def generation(carry, _):
        members, tuner_state, key = carry
        key, k = jax.random.split(key)
        members, _ = jax.vmap(task.train_window)(members, jax.random.split(k, n))
        scores = jax.vmap(task.evaluate)(members)["score"]  # validation accuracy
        proposal, tuner_state = tuner.update(tuner_state, hj.Observation(score=scores))
        members = hj.population.exploit(members, proposal.parents)  # copy the winners
        members = hj.set_hparams(members, proposal.hparams)  # explore, no retrace
        return (members, tuner_state, key), (scores, proposal.parents)

    @jax.jit
    def train(key):
        k_init, k_hp, k_tuner, key = jax.random.split(key, 4)
        hp = task.space.sample(k_hp, n)  # (n,) per name
        members = jax.vmap(task.init)(jax.random.split(k_init, n), hp)
        carry = (members, tuner.init(k_tuner, hp), key)
        (members, _, _), (scores, parents) = jax.lax.scan(generation, carry, None, generations)
        return members, scores, parents

    members, scores, parents = train(jax.random.key(seed))
    best = int(jnp.argmax(jax.vmap(task.evaluate)(members)["score"]))
    best_member = jax.tree.map(lambda x: x[best], members)
    print(
        f"val accuracy by generation (best member): {[round(float(s), 3) for s in scores.max(1)]}"
    )
    print(f"members replaced per generation: {(parents != jnp.arange(n)).sum(1).tolist()}")
    hp = hj.get_hparams(best_member)
    print(f"best member {best}: test accuracy {float(task.test_accuracy(best_member)):.4f}")
    print("its hyperparameters:", {k: round(float(hp[k]), 5) for k in task.space.names})
    return scores, parents


if __name__ == "__main__":
    run()
