"""Built-in tasks for demos, tests and benchmarks.

Each task module builds pure, jittable ``init`` / ``train_window`` / ``evaluate``
functions and declares its dynamic search space. Datasets come from optional
extras (``pip install 'hagfish-jax[tasks]'``) and are imported lazily.
"""

from . import breast_cancer, digits

__all__ = ["breast_cancer", "digits"]
