"""Model re-purposing (paper 7.3, Fig. 5, 6, 11): ``python benchmarks/repurpose.py --help``.

The runner is :mod:`dsflow.experiments.repurpose` (its docstring has every option); this script only calls it.
"""

from dsflow.cli import run_script
from dsflow.experiments.repurpose import main

if __name__ == "__main__":
    run_script(main)
