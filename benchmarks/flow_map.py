"""Fit the flow map h: x0 -> xT on a finished flow and draw the paper's Fig. 9: ``python benchmarks/flow_map.py --help``.

The runner is :mod:`dsflow.experiments.flow_map` (its docstring has every option); this script only calls it.
"""

from dsflow.experiments.flow_map import main

if __name__ == "__main__":
    main()
