"""One command that proves the GPU path (issue 23): ``python benchmarks/gpu_check.py [--out FILE] [--budget S]``.

See :mod:`dsflow.experiments.gpu_check`; writes ``runs/gpu_check/report.md``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dsflow of this checkout, from anywhere

from dsflow.experiments.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
