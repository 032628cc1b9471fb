"""Run-directory files: arrays, JSON and figures written atomically (write, then rename).

Array format: ``.npz`` files read with ``allow_pickle=False``. A trajectory is a folder ``trajectory/`` of
``step_{t:06d}.npz`` snapshots, each holding ``x`` (n, *feature_shape) float32, ``y`` (n,) int64 and ``step``
(scalar int64). ``final.npz`` holds the last particles (``x``, ``y``) and the first (``x0``, ``y0``).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "save_npz", "load_npz", "write_json", "load_trajectory", "snapshot_path"]


def atomic_write(path: str | os.PathLike, write: Any, suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
        os.close(fd)
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror or err} (is the run directory writable and the disk not full?)") from err
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(f"cannot write {path}: {err.strerror or err} (is the disk full?)") from err
        raise
    return path


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write numeric arrays to ``path`` (.npz, uncompressed) atomically."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise ValueError(f"save_npz: array '{key}' has dtype object; only numeric arrays are stored")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def load_npz(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file without unpickling; check that ``keys`` are present.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable .npz, holds pickled objects, or lacks a key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"array file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable .npz array file (not a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
    except ValueError as err:  # numpy refuses object arrays without allow_pickle; or an array's bytes are damaged
        if "pickle" in str(err):
            raise ValueError(f"{path}: holds pickled objects, which are never loaded ({err})") from err
        raise ValueError(f"{path}: not a readable .npz array file (ValueError: {err})") from err
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as err:
        raise ValueError(f"{path}: not a readable .npz array file ({type(err).__name__}: {err})") from err
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}; found {sorted(out)}")
    return out


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    return atomic_write(path, write)


def snapshot_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Path of the trajectory snapshot of ``step``."""
    return Path(run_dir) / "trajectory" / f"step_{step:06d}.npz"


def load_trajectory(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Stack a run's snapshots: ``steps`` (T,), ``x`` (T, n, *feature_shape), ``y`` (T, n)."""
    files = sorted((Path(run_dir) / "trajectory").glob("step_*.npz"))
    if not files:
        raise FileNotFoundError(f"no trajectory snapshots in {Path(run_dir) / 'trajectory'}")
    snaps = [load_npz(f, keys=("x", "y", "step")) for f in files]
    return {
        "steps": np.array([int(s["step"]) for s in snaps]),
        "x": np.stack([s["x"] for s in snaps]),
        "y": np.stack([s["y"] for s in snaps]),
    }
