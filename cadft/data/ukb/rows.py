"""Check that every row of a text extract has as many fields as its header (cadft/data/ukb/read.py runs it while
polars parses the file, and reports it first).

polars fills a short row with nulls and, when columns are selected, ignores a long one, so a file cut off
mid-row (an interrupted download or copy) would read as participants with missing values. The file is read
line by line (memory: one record), counting separators outside double quotes as RFC 4180 quoting works: a
quoted value may hold the separator or a newline (the record then continues on the next line), and `""`
inside quotes is a quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cadft.data.ukb.compressed import open_bytes

MAX_RECORD_BYTES = 1 << 26  # a quoted value still open after 64 MiB is a stray quote, not a value with newlines
_QUOTE = ord('"')
_QUOTED = re.compile(rb'"[^"]*"')  # `"a""b"` is two adjacent matches: removing them removes the whole value


@dataclass(frozen=True)
class RaggedRow:
    """The first record whose field count differs from the header's."""

    line: int  # 1-based line of the file where the record starts, as an editor numbers lines
    found: int
    expected: int
    blank: bool  # the record is an empty line
    at_end: bool  # the record is the file's last one
    open_quote: bool  # the record opens a quoted value that the file never closes (or not within MAX_RECORD_BYTES)


def first_ragged_row(path: Path, separator: str) -> RaggedRow | None:
    sep = separator.encode()
    quoted_sep = b'"' + sep + b'"'
    expected = None
    bad = None
    record, start, quotes = b"", 1, 0  # the record being read (several lines when a quoted value holds a newline)
    with open_bytes(path) as fh:  # a .csv.gz decompressed as it is read
        for number, line in enumerate(fh, start=1):
            if bad is not None:  # a line after the bad record: it was not the last
                return RaggedRow(*bad, at_end=False, open_quote=False)
            if record:
                record += line
            else:
                record, start = line, number
            quotes += line.count(b'"')
            if quotes % 2:  # inside a quoted value: the record goes on, unless the quote is never closed
                if len(record) > MAX_RECORD_BYTES:
                    found = _field_count(record, quotes, sep, quoted_sep)
                    return RaggedRow(start, found, expected or found, blank=False, at_end=False, open_quote=True)
                continue
            found = _field_count(record, quotes, sep, quoted_sep)
            if expected is None:
                expected = found
            elif found != expected:
                bad = (start, found, expected, _content_end(record) == 0)
            record, quotes = b"", 0
    if bad is not None:
        return RaggedRow(*bad, at_end=True, open_quote=False)
    if record and expected is not None:  # the file ends inside a quoted value
        return RaggedRow(
            start, _field_count(record, quotes, sep, quoted_sep), expected, blank=False, at_end=True, open_quote=True
        )
    return None


def _field_count(record: bytes, quotes: int, sep: bytes, quoted_sep: bytes) -> int:
    """Values in one record (its line end included: it holds no separator or quote) with `quotes` quote bytes."""
    if not quotes:
        return record.count(sep) + 1
    seps = record.count(sep)
    end = _content_end(record)
    if (
        quotes == 2 * (seps + 1)
        and record.count(quoted_sep) == seps
        and end >= 2
        and record[0] == record[end - 1] == _QUOTE
        and record[1] != sep[0]
        and record[end - 2] != sep[0]
    ):
        # ukbconv CSV: every value quoted, none holding a quote or separator. The quotes are then exactly the
        # first and last byte and the two around each separator, so every separator lies between values.
        return seps + 1
    return _QUOTED.sub(b"", record).count(sep) + 1


def _content_end(record: bytes) -> int:
    """The record's length without its line end."""
    end = len(record)
    while end and record[end - 1] in b"\r\n":
        end -= 1
    return end
