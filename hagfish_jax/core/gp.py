"""A small Gaussian process in jnp: Matérn 5/2, Cholesky, fitted length scales, EI and UCB.

Everything has static shapes so it runs inside jit, ``lax.scan`` and ``vmap``
without recompiling as history grows: observations live in a fixed-size ring
buffer with a validity mask, and masked entries are made inert (no correlation,
unit noise, zero target) instead of being removed.

Targets are standardised over the valid entries before fitting; the returned
posterior is in the original units.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import ndtr

from ._checks import integer

__all__ = [
    "Buffer",
    "GPParams",
    "Posterior",
    "add",
    "buffer",
    "expected_improvement",
    "fit",
    "log_marginal_likelihood",
    "matern52",
    "penalty",
    "posterior",
    "predict",
    "ucb",
]

_JITTER = 1e-6


class Buffer(NamedTuple):
    """A ring buffer of observations: ``x`` ``(M, d)``, ``y`` ``(M,)``, ``valid`` ``(M,)``."""

    x: jax.Array
    y: jax.Array
    valid: jax.Array
    pos: jax.Array  # where the next observation goes
    count: jax.Array  # observations ever added


def buffer(capacity: int, dim: int) -> Buffer:
    """An empty buffer for ``capacity`` observations of ``dim`` inputs.

    Args:
      capacity: observations kept (an integer >= 2); later ones overwrite the oldest.
      dim: inputs per observation (an integer >= 1).

    Returns:
      A :class:`Buffer` with nothing valid.

    Raises:
      ValueError: ``capacity`` or ``dim`` is not an integer in its range.

    >>> import hagfish_jax as hj
    >>> buf = hj.gp.buffer(4, 2)
    >>> buf.x.shape, buf.valid.tolist()
    ((4, 2), [False, False, False, False])
    """
    capacity = integer("gp.buffer: capacity", capacity, 2)
    dim = integer("gp.buffer: dim", dim, 1)
    return Buffer(
        jnp.zeros((capacity, dim), jnp.float32),
        jnp.zeros((capacity,), jnp.float32),
        jnp.zeros((capacity,), jnp.bool_),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(0, jnp.int32),
    )


def add(buf: Buffer, x: jax.Array, y: jax.Array, valid: jax.Array | bool = True) -> Buffer:
    """Write ``(x, y)`` over the oldest entry (when ``valid``; otherwise nothing changes).

    Args:
      buf: the buffer.
      x: ``(dim,)`` inputs.
      y: the target.
      valid: a boolean (traced inside ``jit``); ``False`` leaves ``buf`` unchanged.

    Returns:
      The new buffer (same shapes, so nothing recompiles).

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> buf = hj.gp.add(hj.gp.buffer(3, 1), jnp.array([0.5]), 2.0)
    >>> buf = hj.gp.add(buf, jnp.array([0.7]), 9.0, valid=False)
    >>> buf.y.tolist(), buf.valid.tolist(), int(buf.count)
    ([2.0, 0.0, 0.0], [True, False, False], 1)
    """
    valid = jnp.asarray(valid, jnp.bool_)
    capacity = buf.y.shape[0]
    new = Buffer(
        buf.x.at[buf.pos].set(jnp.asarray(x, jnp.float32)),
        buf.y.at[buf.pos].set(jnp.asarray(y, jnp.float32)),
        buf.valid.at[buf.pos].set(True),
        (buf.pos + 1) % capacity,
        buf.count + 1,
    )
    return jax.tree.map(lambda a, b: jnp.where(valid, a, b), new, buf)


def penalty(buf: Buffer) -> jax.Array:
    """A target for a diverged (NaN/inf) observation: clearly below everything seen.

    The lowest valid target minus the observed range (at least ``1e-3``), or -1 in
    an empty buffer.

    Args:
      buf: the buffer.

    Returns:
      A float32 scalar.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> buf = hj.gp.buffer(4, 1)
    >>> float(hj.gp.penalty(buf))
    -1.0
    >>> for x, y in [(0.2, 1.0), (0.5, 3.0)]:
    ...     buf = hj.gp.add(buf, jnp.array([x]), y)
    >>> float(hj.gp.penalty(buf))  # 1 - (3 - 1)
    -1.0
    """
    lo = jnp.min(jnp.where(buf.valid, buf.y, jnp.inf))
    hi = jnp.max(jnp.where(buf.valid, buf.y, -jnp.inf))
    return jnp.where(jnp.any(buf.valid), lo - jnp.maximum(hi - lo, 1e-3), -1.0)


class GPParams(NamedTuple):
    """Kernel hyperparameters: per-dimension length scales and noise (standardised units)."""

    lengthscales: jax.Array
    noise: jax.Array


def matern52(x1: jax.Array, x2: jax.Array, lengthscales: jax.Array) -> jax.Array:
    """Matérn 5/2 kernel with unit variance: ``(n1, d), (n2, d) -> (n1, n2)``.

    Args:
      x1: ``(n1, d)`` points.
      x2: ``(n2, d)`` points.
      lengthscales: ``(d,)`` per-dimension length scales.

    Returns:
      ``(n1, n2)`` covariances: 1 at distance 0, decaying with distance.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> k = hj.gp.matern52(jnp.zeros((1, 2)), jnp.array([[0.0, 0.0], [3.0, 4.0]]), jnp.ones(2))
    >>> k.shape, round(float(k[0, 0]), 6), bool(k[0, 1] < 1e-3)
    ((1, 2), 1.0, True)
    """
    d = (x1[:, None, :] - x2[None, :, :]) / lengthscales
    r = jnp.sqrt(jnp.sum(d * d, axis=-1) + 1e-12)
    s5 = jnp.sqrt(5.0) * r
    return (1.0 + s5 + 5.0 / 3.0 * r * r) * jnp.exp(-s5)


def _standardise(buf: Buffer):
    n = jnp.maximum(jnp.sum(buf.valid), 1)
    mu = jnp.sum(jnp.where(buf.valid, buf.y, 0.0)) / n
    var = jnp.sum(jnp.where(buf.valid, (buf.y - mu) ** 2, 0.0)) / n
    sd = jnp.where(var > 1e-20, jnp.sqrt(var), 1.0)
    return jnp.where(buf.valid, (buf.y - mu) / sd, 0.0), mu, sd


def _gram(buf: Buffer, params: GPParams) -> jax.Array:
    v = buf.valid
    k = matern52(buf.x, buf.x, params.lengthscales)
    k = jnp.where(v[:, None] & v[None, :], k, 0.0)
    diag = jnp.where(v, params.noise + _JITTER, 1.0)
    return k + jnp.diag(diag)


def log_marginal_likelihood(buf: Buffer, params: GPParams) -> jax.Array:
    """Log evidence of the standardised targets (masked entries contribute nothing).

    Args:
      buf: the observations.
      params: the kernel parameters.

    Returns:
      A float32 scalar; higher means ``params`` explain the data better.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> buf = hj.gp.buffer(4, 1)
    >>> for x, y in [(0.2, 1.0), (0.5, 3.0), (0.8, 2.0)]:
    ...     buf = hj.gp.add(buf, jnp.array([x]), y)
    >>> lml = lambda ls: hj.gp.log_marginal_likelihood(buf, hj.gp.GPParams(jnp.array([ls]), 1e-3))
    >>> bool(lml(0.3) > lml(10.0))  # too smooth a kernel cannot follow the data
    True
    """
    y, _, _ = _standardise(buf)
    chol = jnp.linalg.cholesky(_gram(buf, params))
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    n = jnp.sum(buf.valid)
    return (
        -0.5 * jnp.dot(y, alpha)
        - jnp.sum(jnp.log(jnp.diagonal(chol)))
        - 0.5 * n * jnp.log(2.0 * jnp.pi)
    )


def fit(
    buf: Buffer,
    grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
    noise: float = 1e-3,
    steps: int = 20,
    learning_rate: float = 0.1,
    min_noise: float = 1e-6,
) -> GPParams:
    """Fit length scales (and noise) by maximising the marginal likelihood.

    A grid search over a shared length scale picks the start; ``steps`` Adam steps
    on the log length scales (one per dimension) and the log noise refine it.
    Length scales stay in ``[0.01, 10]``; noise in ``[min_noise, 1]`` (targets
    are standardised).

    Args:
      buf: the observations.
      grid: shared length scales tried as starting points.
      noise: the starting noise (standardised units).
      steps: Adam steps after the grid search (an integer >= 0).
      learning_rate: Adam's step size on the log parameters.
      min_noise: the smallest noise allowed.

    Returns:
      The fitted :class:`GPParams` (the best seen, never a NaN).

    Raises:
      ValueError: ``steps`` is not an integer >= 0.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> buf = hj.gp.buffer(4, 1)
    >>> for x, y in [(0.2, 1.0), (0.5, 3.0), (0.8, 2.0)]:
    ...     buf = hj.gp.add(buf, jnp.array([x]), y)
    >>> params = jax.jit(hj.gp.fit, static_argnames="steps")(buf, steps=5)
    >>> params.lengthscales.shape, bool(0.01 <= params.lengthscales[0] <= 10.0)
    ((1,), True)
    """
    steps = integer("gp.fit: steps", steps, 0)
    dim = buf.x.shape[1]

    def neg(theta):
        ls = jnp.exp(jnp.clip(theta[:dim], jnp.log(0.01), jnp.log(10.0)))
        nz = jnp.exp(jnp.clip(theta[dim], jnp.log(min_noise), 0.0))
        return -log_marginal_likelihood(buf, GPParams(ls, nz))

    starts = jnp.log(jnp.asarray(grid, jnp.float32))
    thetas = jax.vmap(
        lambda s: jnp.concatenate([jnp.full((dim,), s), jnp.log(jnp.asarray([noise]))])
    )(starts)
    losses = jax.vmap(neg)(thetas)
    theta = thetas[jnp.argmin(jnp.where(jnp.isfinite(losses), losses, jnp.inf))]

    opt = optax.adam(learning_rate)

    def step(carry, _):
        theta, state, best, best_loss = carry
        loss, g = jax.value_and_grad(neg)(theta)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        better = jnp.isfinite(loss) & (loss < best_loss)
        best = jnp.where(better, theta, best)
        best_loss = jnp.where(better, loss, best_loss)
        updates, state = opt.update(g, state)
        return (optax.apply_updates(theta, updates), state, best, best_loss), None

    init = (theta, opt.init(theta), theta, jnp.asarray(jnp.inf, jnp.float32))
    (theta, _, best, best_loss), _ = jax.lax.scan(step, init, None, length=steps)
    final = neg(theta)
    theta = jnp.where(jnp.isfinite(final) & (final < best_loss), theta, best)
    ls = jnp.exp(jnp.clip(theta[:dim], jnp.log(0.01), jnp.log(10.0)))
    nz = jnp.exp(jnp.clip(theta[dim], jnp.log(min_noise), 0.0))
    return GPParams(ls, nz)


class Posterior(NamedTuple):
    """Everything needed to predict: the buffer, kernel parameters and solved weights."""

    buf: Buffer
    params: GPParams
    chol: jax.Array
    alpha: jax.Array
    mu: jax.Array
    sd: jax.Array


def posterior(buf: Buffer, params: GPParams) -> Posterior:
    """Condition the GP on the buffer.

    Args:
      buf: the observations.
      params: the kernel parameters (from :func:`fit`).

    Returns:
      A :class:`Posterior` for :func:`predict`.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> buf = hj.gp.add(hj.gp.buffer(4, 1), jnp.array([0.5]), 3.0)
    >>> post = hj.gp.posterior(buf, hj.gp.GPParams(jnp.array([0.3]), jnp.float32(1e-4)))
    >>> post.chol.shape
    (4, 4)
    """
    y, mu, sd = _standardise(buf)
    chol = jnp.linalg.cholesky(_gram(buf, params))
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    return Posterior(buf, params, chol, alpha, mu, sd)


def predict(post: Posterior, xq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and standard deviation at ``xq`` ``(n, d)``, in the targets' units.

    With no valid observation the prior is returned (mean 0, unit deviation).

    Args:
      post: from :func:`posterior`.
      xq: ``(n, d)`` query points.

    Returns:
      ``(mean, std)``, each ``(n,)``.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> buf = hj.gp.buffer(4, 1)
    >>> for x, y in [(0.2, 1.0), (0.5, 3.0), (0.8, 2.0)]:
    ...     buf = hj.gp.add(buf, jnp.array([x]), y)
    >>> post = hj.gp.posterior(buf, hj.gp.GPParams(jnp.array([0.3]), jnp.float32(1e-4)))
    >>> mean, std = hj.gp.predict(post, jnp.array([[0.5], [5.0]]))
    >>> round(float(mean[0]), 2), round(float(mean[1]), 2)  # the data; far away, their mean
    (3.0, 2.0)
    >>> bool(std[0] < 0.05 < std[1])
    True
    """
    kq = matern52(xq, post.buf.x, post.params.lengthscales)
    kq = jnp.where(post.buf.valid[None, :], kq, 0.0)
    mean = kq @ post.alpha
    v = jax.scipy.linalg.solve_triangular(post.chol, kq.T, lower=True)
    var = jnp.maximum(1.0 - jnp.sum(v * v, axis=0), 1e-12)
    return post.mu + post.sd * mean, post.sd * jnp.sqrt(var)


def expected_improvement(
    mean: jax.Array, std: jax.Array, best: jax.Array, xi: float = 0.0
) -> jax.Array:
    """EI for maximisation: ``E[max(f - best - xi, 0)]`` under ``N(mean, std²)``.

    Args:
      mean, std: the posterior at the candidates.
      best: the value to beat.
      xi: a margin: only improvements above ``best + xi`` count.

    Returns:
      The expected improvement, shaped like ``mean``.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> ei = hj.gp.expected_improvement(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 0.0)
    >>> [round(float(v), 4) for v in ei]  # a sure gain of 1; a coin flip around 0
    [1.0, 0.3989]
    """
    std = jnp.maximum(std, 1e-12)
    z = (mean - best - xi) / std
    return (mean - best - xi) * ndtr(z) + std * jnp.exp(-0.5 * z * z) / jnp.sqrt(2.0 * jnp.pi)


def ucb(mean: jax.Array, std: jax.Array, beta: float | jax.Array = 2.0) -> jax.Array:
    """Upper confidence bound ``mean + sqrt(beta) * std``.

    Args:
      mean, std: the posterior at the candidates.
      beta: exploration weight (>= 0).

    Returns:
      The bound, shaped like ``mean``.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> hj.gp.ucb(jnp.array([1.0]), jnp.array([0.5]), beta=4.0).tolist()
    [2.0]
    """
    return mean + jnp.sqrt(beta) * std
