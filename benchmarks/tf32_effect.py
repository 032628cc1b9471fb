"""What TF32 products would do to a flow: ``python benchmarks/tf32_effect.py --help``.

The measurement is :mod:`dsflow.experiments.tf32_effect`; this script only calls it.
"""

from dsflow.experiments.tf32_effect import main

if __name__ == "__main__":
    main()
