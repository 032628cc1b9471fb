"""Read the records of an offline W&B run file (``run-<id>.wandb``) for tests.

The file is a LevelDB-style log, as wandb-core writes it (``core/pkg/leveldb/record.go`` and
``core/internal/stream/store.go`` in wandb; wandb 0.31 ships no Python reader of its own): 32 KiB blocks of
chunks, the first block starting with the file's 7-byte header (":W&B", magic 0xBEE1 little-endian, version 0).
Each chunk is a 7-byte header (crc32 of the type byte and the payload, little-endian uint16 payload length, type:
1 full, 2 first, 3 middle, 4 last) and its payload; chunks never cross a block boundary, and a block whose last
bytes cannot hold a chunk header ends in zeros. A record (a serialised ``wandb_internal_pb2.Record``) is one full
chunk, or a first chunk, any middle chunks and a last chunk.

The reader is strict: a checksum mismatch, a chunk cut off by the end of the file or an unfinished record raise
``ValueError`` naming the offset, so a file read before wandb-core finished writing it fails loudly instead of
yielding fewer records.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

__all__ = ["read_records", "history"]

_BLOCK = 32 * 1024
_HEADER = 7
_FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes, path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """Every chunk of the log as (offset, type, payload), checksums verified."""
    pos = len(_FILE_HEADER)
    while pos < len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer: too short for a chunk header, zero-filled
            if data[pos : pos + left].strip(b"\0"):
                raise ValueError(f"{path}: non-zero block trailer at offset {pos}")
            pos += left
            continue
        if pos + _HEADER > len(data):
            raise ValueError(f"{path}: chunk header cut off at offset {pos} (file is {len(data)} bytes)")
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        end = pos + _HEADER + length
        if end > pos + left or end > len(data):
            raise ValueError(f"{path}: chunk at offset {pos} of length {length} overruns its block or the file")
        payload = data[pos + _HEADER : end]
        if crc != zlib.crc32(bytes([kind]) + payload):
            raise ValueError(f"{path}: checksum mismatch in the chunk at offset {pos}")
        yield pos, kind, payload
        pos = end


def read_records(path: str | Path) -> Iterator[pb.Record]:
    """Every record of the run file, in order."""
    data = Path(path).read_bytes()
    if data[: len(_FILE_HEADER)] != _FILE_HEADER:
        raise ValueError(f"{path}: not a W&B run file (header {data[:7]!r}, expected {_FILE_HEADER!r})")
    parts: list[bytes] = []
    for pos, kind, payload in _chunks(data, path):
        if kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
            raise ValueError(f"{path}: unknown chunk type {kind} at offset {pos}")
        if (kind in (_FULL, _FIRST)) != (not parts):  # a record starts exactly when none is open
            raise ValueError(f"{path}: chunk of type {kind} at offset {pos} out of order")
        parts.append(payload)
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record
    if parts:
        raise ValueError(f"{path}: the last record is unfinished (file cut off at {len(data)} bytes)")


def history(path: str | Path) -> list[dict[str, str]]:
    """Every logged history row as {key: value_json} (nested keys joined by '/')."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows
