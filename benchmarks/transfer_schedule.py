"""How the transfer flow's schedule and label distance were chosen: ``python benchmarks/transfer_schedule.py --help``.

The runner is :mod:`dsflow.experiments.transfer_schedule` (its docstring has every option); this script only calls it.
"""

from dsflow.experiments.transfer_schedule import main

if __name__ == "__main__":
    main()
