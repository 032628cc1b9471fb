"""docs/export.md's notebook example runs as written: its ```python blocks, executed in order in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_export_docs_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _python_blocks(DOC.read_text())
    assert blocks and "trainer.fit" in blocks[0]
    monkeypatch.chdir(tmp_path)  # the example writes runs/notebook/ where it runs
    scope: dict = {"__name__": "docs_export_example"}
    exec(compile("\n".join(blocks), str(DOC), "exec"), scope)  # its own asserts check what it claims
    assert (tmp_path / "runs/notebook/flowed.npz").is_file()
    assert tuple(scope["images"].shape) == (60, 1, 8, 8) and scope["labels"].shape == (60,)
