"""Read the records of an offline W&B run file (``run-<id>.wandb``) for tests.

The file is a LevelDB-style log (as wandb's own datastore writes it): a 7-byte header (":W&B", magic 0xBEE1,
version 0), then 32 KiB blocks of chunks, each with a 7-byte header (crc32, little-endian length, type:
1 full, 2 first, 3 middle, 4 last) followed by a slice of a serialised ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32 * 1024
_HEADER = 7


def read_records(path: str | Path) -> Iterator[pb.Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, parts = _HEADER, []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 0:
            continue
        parts.append(chunk)
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def history(path: str | Path) -> list[dict[str, str]]:
    """Every logged history row as {key: value_json}."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows
