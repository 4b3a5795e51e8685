"""``hagfish hpo``: rounds of whole-run trials steered by the advisors' council.

:func:`run_hpo` (the rounds and their run directory, resumable), :class:`HpoConfig`,
:class:`Executor` (one trial, with the out-of-memory step-down).
"""

from .executor import Executor, TrialFailed, TrialResult, is_oom
from .rounds import HpoConfig, HpoResult, build_council, run_hpo, task_family

__all__ = [
    "Executor",
    "HpoConfig",
    "HpoResult",
    "TrialFailed",
    "TrialResult",
    "build_council",
    "is_oom",
    "run_hpo",
    "task_family",
]
