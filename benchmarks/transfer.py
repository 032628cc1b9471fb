"""Transfer learning via flows (paper section 7.2, appendix C and E; Fig. 3e, 4, 9, 10) in one command: ``python benchmarks/transfer.py --help``.

The runner is :mod:`dsflow.experiments.transfer` (its docstring has every option); this script only calls it.
"""

from dsflow.cli import run_script
from dsflow.experiments.transfer import main

if __name__ == "__main__":
    run_script(main)
