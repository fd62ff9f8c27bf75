"""Compressed extracts, told by their first bytes (not their name): gzip is read (polars decompresses a .csv.gz
itself, in memory: for a full extract, decompress it or convert it to Parquet first), and the row and encoding checks
read it through Python's gzip; zstd, bzip2, xz and zip are refused by name (read.py)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO

GZIP = "gzip"
SIGNATURES = {
    b"\x1f\x8b": GZIP,
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}


def compression_of(path: Path) -> str | None:
    """gzip, zstd, bzip2, xz or zip when the file starts with that format's signature; None for a plain file."""
    with Path(path).open("rb") as fh:
        head = fh.read(8)
    return next((name for signature, name in SIGNATURES.items() if head.startswith(signature)), None)


def open_bytes(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip."""
    return gzip.open(path, "rb") if compression_of(path) == GZIP else Path(path).open("rb")
