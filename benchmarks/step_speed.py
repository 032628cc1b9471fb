"""Seconds per flow step, peak memory and host reads: ``python benchmarks/step_speed.py --help``.

The benchmark is :mod:`dsflow.experiments.step_speed` (its docstring says what is measured); this script only
calls it.
"""

from dsflow.experiments.step_speed import main

if __name__ == "__main__":
    main()
