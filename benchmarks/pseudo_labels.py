"""Pseudo-label quality without tuning on the scored data: ``python benchmarks/pseudo_labels.py --help``.

The runner is :mod:`dsflow.experiments.pseudo_labels` (its docstring has every option); this script only calls it.
"""

from dsflow.experiments.pseudo_labels import main

if __name__ == "__main__":
    main()
