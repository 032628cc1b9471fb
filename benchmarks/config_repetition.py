"""How much the configs repeat themselves: ``python benchmarks/config_repetition.py --help``.

The measure is :mod:`dsflow.experiments.config_repetition` (its docstring defines it); this script only calls it.
"""

from dsflow.experiments.config_repetition import main

if __name__ == "__main__":
    main()
