"""The imperative shell: plain Python between jitted core programs.

The autonomous loop (``loop/``), the budget planner (``budget/``), the runs behind
``hagfish demo`` (``demo/``), run records, plots, configs and the command line. Shell
code calls the core's compiled programs and reads their outputs between calls; the
core never imports it. Each module here is imported only when first used.
"""
