"""Where datasets live on disk, and the error raised when they are not there.

The data root is, in order: the ``root`` given to a dataset (YAML or CLI), the environment variable
``DSFLOW_DATA``, or a per-user cache folder ``~/.cache/dsflow/data`` (``$XDG_CACHE_HOME/dsflow/data`` when set),
where torchvision downloads for users with internet access.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "MissingDataError"]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$DSFLOW_DATA``, else the user cache folder."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get("DSFLOW_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dsflow" / "data"


class MissingDataError(FileNotFoundError):
    """A dataset's files are neither on disk nor downloadable; the message says what to put where."""

    def __init__(self, name: str, root: Path, files: list[str], hint: str = "", cause: BaseException | None = None) -> None:
        missing = [f for f in files if not (root / f).exists()] or files
        lines = [
            f"{name}: dataset files not found under {root} and could not be downloaded"
            + (f" ({type(cause).__name__}: {cause})" if cause is not None else ""),
            "missing: " + ", ".join(str(root / f) for f in missing),
            "provide them by: running once with internet access (download=True fetches them into that root), "
            "or copying the files there, or pointing `root` (or the DSFLOW_DATA environment variable) at a folder "
            "that holds them",
        ]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))
        self.missing = [str(root / f) for f in missing]
