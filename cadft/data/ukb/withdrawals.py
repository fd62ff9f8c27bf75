"""Participants who withdrew consent: removed before anything else reads them, never written anywhere.

UK Biobank sends each application files of withdrawn eids, one a line (`data.withdrawals=FILE`); negative eids
(how withdrawn participants appear in genetic sample files) are dropped always. Only counts are reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import polars as pl

from cadft.data.ukb.read import Extract
from cadft.errors import CadftError


class WithdrawalsError(CadftError):
    pass


def read_withdrawals(path: str | Path | None) -> frozenset[int]:
    """The eids of a withdrawals file (blank lines allowed); empty for no file. One line naming the file and the
    line for a missing file or a line that is no eid."""
    if path is None:
        return frozenset()
    path = Path(path)
    if not path.is_file():
        raise WithdrawalsError(f"data.withdrawals={path}: no such file")
    eids = set()
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            text = raw.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
            if not text:
                continue
            try:
                eids.add(int(text))
            except ValueError:
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise WithdrawalsError(
                    f"data.withdrawals={path}: line {number}: {shown!r} is not an eid; the file has one "
                    "integer eid a line"
                ) from None
    return frozenset(eids)


def content_digest(path: str | Path | None) -> str | None:
    """SHA-256 of the file's bytes: the prepared-table cache key changes with the file's content."""
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def kept(eids: pl.Series, withdrawn: frozenset[int]) -> tuple[pl.Series, dict[str, int]]:
    """A mask of the eids to keep (not withdrawn, not negative) and the counts removed."""
    negative = eids < 0
    listed = eids.is_in(list(withdrawn)) & ~negative
    return ~(negative | listed), {"withdrawn": int(listed.sum()), "negative_eids": int(negative.sum())}


def drop_withdrawn(extract: Extract, withdrawn: frozenset[int]) -> tuple[Extract, dict[str, int]]:
    """The extract without withdrawn participants and negative eids, and how many of each were removed."""
    keep, counts = kept(extract.scalars["eid"], withdrawn)
    if all(count == 0 for count in counts.values()):
        return extract, counts
    check_someone_left(extract.path, int(keep.sum()), counts)
    eids = extract.scalars.filter(keep).select("eid")
    return replace(
        extract, scalars=extract.scalars.filter(keep), entries=extract.entries.join(eids, on="eid", how="semi")
    ), counts


def check_someone_left(path: str | Path, remaining: int, counts: dict[str, int]) -> None:
    """Said as such when withdrawals removed everyone (not as an empty cohort, which points at the task)."""
    if remaining == 0 and any(counts.values()):
        raise WithdrawalsError(
            f"{path}: every participant was withdrawn ({counts['withdrawn']} listed in the withdrawals file, "
            f"{counts['negative_eids']} with a negative eid): no one is left to use"
        )
