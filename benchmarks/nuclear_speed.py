"""Nuclear norms by eigensolvers and by Newton-Schulz products: ``python benchmarks/nuclear_speed.py --help``.

The benchmark is :mod:`dsflow.experiments.nuclear_speed`; this script only calls it.
"""

from dsflow.experiments.nuclear_speed import main

if __name__ == "__main__":
    main()
