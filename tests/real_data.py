"""Real datasets under the data root: every real-data test asks for them here, and fails the same way without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsflow.data import data_root

__all__ = ["require_data"]


def require_data(*files: str) -> Path:
    """The data root, after checking that ``files`` (paths relative to it) exist; fails the test otherwise.

    Missing data fails rather than skips: a CI run without ``DSFLOW_DATA`` must not pass by testing nothing.
    """
    root = data_root()
    missing = [f for f in files if not (root / f).exists()]
    if missing:
        pytest.fail(f"real data not under {root}: {missing}; set DSFLOW_DATA (CI uses ../shared/data)")
    return root
