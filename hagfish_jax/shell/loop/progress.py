"""``ProgressBar``: a tqdm bar over a Loop's windows (a widget in Jupyter).

The bar counts trained windows out of the run's ``max_windows`` and shows, beside
the count, the best score so far, the backoff's phase and, for a population, the
member that holds the best score. It uses ``tqdm.auto``: a widget in a Jupyter
notebook (with ``ipywidgets`` installed), text on the terminal's stderr elsewhere.
tqdm comes with the ``tasks`` extra (``pip install 'hagfish-jax[tasks]'``).
"""

from __future__ import annotations

import math
from typing import Any

from .callbacks import Callback

__all__ = ["ProgressBar"]

MISSING_TQDM = "hj.ProgressBar needs tqdm: pip install 'hagfish-jax[tasks]' (or pip install tqdm)"


def _tqdm_class() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(MISSING_TQDM) from err
    return tqdm


class ProgressBar(Callback):
    """A progress bar for :class:`hagfish_jax.Loop`, as a callback.

    The bar opens when the run starts (described ``"compiling"`` until the first
    window is trained; then the clock restarts, so the rate is training's), moves by
    one per trained window (a resumed run starts where its checkpoint left off), and
    closes when the run stops, whatever stopped it. A run that ends before its budget
    (a target reached, DORMANT, ``loop.stop()``) fills the bar and names the reason;
    one whose step raised keeps the bar where the error came (red in a notebook).
    A run interrupted from outside (Ctrl-C) leaves its bar open: :meth:`close` or the
    next run closes it.
    The postfix shows ``best`` (the best score so far), ``phase`` (the backoff's,
    in lower case) and for a population ``member`` (the member that reached the
    best score: the Loop's ``best_member``, the program's own choice).

    Args:
      desc: the bar's description once training runs.
      digits: significant digits of the best score shown.
      **tqdm_options: passed to ``tqdm.auto.tqdm`` (``file``, ``leave``, ``ncols``,
        ``mininterval``, ``disable``, ...); ``total``, ``desc`` and ``unit`` are set
        by the bar.

    Raises:
      ImportError: tqdm is not installed (it comes with the ``tasks`` extra).
      ValueError: ``digits`` is not an integer >= 1, or ``tqdm_options`` sets
        ``total``, ``desc`` or ``unit``.

    >>> import io, jax, jax.numpy as jnp, optax, hagfish_jax as hj
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> @jax.jit
    ... def step(state, key):
    ...     u, opt = tx.update(2 * state["w"], state["opt"], state["w"])
    ...     return {"w": state["w"] + u, "opt": opt}, {}
    >>> evaluate = jax.jit(lambda state: {"score": -jnp.sum(state["w"] ** 2)})
    >>> bar = hj.ProgressBar(file=io.StringIO())
    >>> w = jnp.ones(3)
    >>> _ = hj.Loop(step, evaluate, callbacks=[bar]).run({"w": w, "opt": tx.init(w)},
    ...                                                  jax.random.key(0), 5)
    >>> bar.n, bar.total, bar.closed
    (5, 5, True)
    """

    def __init__(self, desc: str = "tuning", digits: int = 4, **tqdm_options: Any) -> None:
        if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
            raise ValueError(f"ProgressBar: digits must be an integer >= 1, got {digits!r}")
        taken = sorted({"total", "desc", "unit"} & set(tqdm_options))
        if taken:
            raise ValueError(
                f"ProgressBar: {', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set by "
                "the bar; pass desc= for the description (the total is the run's max_windows)"
            )
        self._tqdm = _tqdm_class()
        self.desc = str(desc)
        self.digits = digits
        self.options = dict(tqdm_options)
        self.bar: Any = None
        self.best_score: float | None = None
        self.best_member: int | None = None
        self._population: int | None = None
        self._started, self._closed = False, False
        self._postfix: dict[str, Any] = {}

    # -- what the bar shows -------------------------------------------------------------
    @property
    def n(self) -> int:
        """Windows counted by the bar (0 before any run)."""
        return 0 if self.bar is None else int(self.bar.n)

    @property
    def total(self) -> int | None:
        """The bar's total: the run's ``max_windows`` (fewer when it ended early)."""
        return None if self.bar is None else self.bar.total

    @property
    def closed(self) -> bool:
        """Whether the last run's bar has been closed (``True`` before any run)."""
        return self.bar is None or self._closed

    @property
    def postfix(self) -> dict[str, Any]:
        """What the postfix shows now: ``best``, ``phase`` and for a population ``member``."""
        return dict(self._postfix)

    def close(self) -> None:
        """Close the bar (a run's stop does it; needed only if a run was interrupted)."""
        if self.bar is not None and not self._closed:
            self._closed = True
            self.bar.close()

    # -- callbacks ------------------------------------------------------------------------
    def on_loop_start(self, loop, state):
        self.close()  # a previous run that was interrupted (KeyboardInterrupt) left it open
        total = getattr(loop, "max_windows", None)
        self._population = loop.population
        self.best_score, self.best_member = None, None
        self._started, self._closed = False, False
        self._postfix = {}
        self.bar = self._tqdm(total=total, desc="compiling", unit="window", **self.options)

    def on_window_end(self, loop, window, metrics):
        if self.bar is None or self._closed:
            return
        if not self._started:  # the first window also compiled: time training only
            self._started = True
            self.bar.set_description(self.desc, refresh=False)
            self.bar.reset(total=self.bar.total)
        self.bar.update(int(window) + 1 - self.bar.n)

    def on_evaluation(self, loop, window, evaluation, transition):
        self._show(loop)

    def on_improvement(self, loop, window, score):
        self.best_score = float(score)
        self.best_member = getattr(loop, "best_member", None)
        self._show(loop)

    def on_rollback(self, loop, window, best_window):
        self._show(loop)

    def on_loop_stop(self, loop, result):
        if self.bar is None or self._closed:
            return
        if result.best_window >= 0:
            self.best_score = float(result.best_score)
            if result.population is not None:
                self.best_member = int(result.best_member)
        if result.error is None and result.reason != "budget":
            _complete(self.bar)  # ended early, and on purpose: the bar is full
            self.bar.set_description(f"{self.desc} ({result.reason})", refresh=False)
        elif result.error is not None:
            self.bar.set_description(f"{self.desc} (error)", refresh=False)
        self._show(loop)
        self.bar.refresh()
        self.close()

    def _show(self, loop) -> None:
        if self.bar is None or self._closed:
            return
        shown: dict[str, Any] = {}
        if self.best_score is not None:
            shown["best"] = _short(self.best_score, self.digits)
        shown["phase"] = loop.backoff.phase.value.lower()
        if self._population is not None and self.best_member is not None:
            shown["member"] = self.best_member
        self._postfix = shown
        self.bar.set_postfix(shown, refresh=False)


def _complete(bar: Any) -> None:
    """The bar's total becomes its count, so it shows full (green in a notebook)."""
    bar.total = bar.n
    widget = getattr(bar, "container", None)  # tqdm.notebook: (text, progress, text)
    if widget is not None and len(getattr(widget, "children", ())) == 3:
        widget.children[1].max = max(bar.n, 1)


def _short(x: float, digits: int) -> str:
    return f"{x:.{digits}g}" if math.isfinite(x) else str(x)
