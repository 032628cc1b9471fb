"""The synthetic-script development datasets: ``python benchmarks/make_scripts.py --out $DSFLOW_DATA/scripts``.

The runner is :mod:`dsflow.experiments.make_scripts` (its docstring has every option); this script only calls it.
"""

from dsflow.experiments.make_scripts import main

if __name__ == "__main__":
    main()
