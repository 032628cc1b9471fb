"""The paper's Table 1 in one command: ``python benchmarks/table1.py --help``.

The runner is :mod:`dsflow.experiments.table1` (its docstring has every option); this script only calls it.
"""

from dsflow.cli import run_script
from dsflow.experiments.table1 import main

if __name__ == "__main__":
    run_script(main)
