"""``hagfish demo``: the built-in tasks tuned through :class:`hagfish_jax.Loop`.

:func:`run` tunes any task of :data:`hagfish_jax.tasks.REGISTRY` (or your own
:class:`hagfish_jax.Task`) with PBT over a population or a guarded single run and
returns a typed :class:`DemoRun`; :func:`write_run` writes its run directory.

>>> import hagfish_jax as hj
>>> run = hj.demo.run("digits", population=4, windows=2, hidden=(8,), steps_per_window=4)
>>> run.summary.population, len(run.rows), run.summary.score_name
(4, 8, 'val_accuracy')
"""

from __future__ import annotations

from .run import GUARD_TUNED, Progress, halving_stages, record_names, run
from .rundir import write_run
from .summary import DemoRun, RunSummary

__all__ = [
    "GUARD_TUNED",
    "DemoRun",
    "Progress",
    "RunSummary",
    "halving_stages",
    "record_names",
    "run",
    "write_run",
]
