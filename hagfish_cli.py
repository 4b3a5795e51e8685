"""The ``hagfish`` command's launcher.

jaxlib 0.9 and 0.10 log two false alarms on stderr for every program loaded from the
persistent compilation cache on a CPU (an "AOT result ... target machine feature
+prefer-no-gather is not supported" error and a "version compatibility" warning: an
LLVM tuning preference mistaken for a missing CPU feature, on the machine that compiled
the program). A second ``hagfish demo`` loads 87 programs and would print hundreds of
such lines. XLA reads its log level once, when jax loads, so this module sets it before
importing anything of jax: C++ log lines below FATAL are hidden unless
``TF_CPP_MIN_LOG_LEVEL`` is already set (``TF_CPP_MIN_LOG_LEVEL=0 hagfish ...`` shows
them all). Errors still reach you as Python exceptions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hagfish`` console script (``python -m hagfish_cli`` too)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from hagfish_jax.shell.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
