"""The seed project's data format: JSON (one list) or JSONL records with a prompt text and a "0"/"1" label."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cadft.data.ukb.read import ExtractError

_LABELS = {"0": 0, "1": 1, 0: 0, 1: 1}


def read_seed_json(
    path: str | Path, *, text_key: str, label_key: str, id_key: str | None, encoding: str = "utf8"
) -> pl.DataFrame:
    """eid, label, text; eid is `id_key`'s value, or the record's 1-based position when id_key is null."""
    path = Path(path)
    if not path.is_file():
        raise ExtractError(f"{path}: no such file")
    try:
        content = path.read_text(encoding="utf-8", errors="strict" if encoding == "utf8" else "replace")
    except UnicodeDecodeError as err:
        raise ExtractError(
            f"{path}: not valid UTF-8 at byte {err.start}; set data.encoding=utf8-lossy to replace it"
        ) from None
    if not content.strip():
        raise ExtractError(f"{path}: the file is empty")
    records = _records(path, content)
    eids, labels, texts = [], [], []
    for number, record in enumerate(records, start=1):
        where = f"{path}: record {number}"
        if not isinstance(record, dict):
            raise ExtractError(f"{where}: expected a JSON object, got {type(record).__name__}")
        for key in (text_key, label_key) + ((id_key,) if id_key else ()):
            if key not in record:
                raise ExtractError(
                    f"{where}: no key {key!r} (keys: {', '.join(sorted(record))}); set data.text_key/label_key/id_key"
                )
        if record[label_key] not in _LABELS:
            raise ExtractError(f'{where}: {label_key}={record[label_key]!r}; expected "0" or "1"')
        if not isinstance(record[text_key], str) or not record[text_key].strip():
            raise ExtractError(f"{where}: {text_key} is empty or not text")
        eids.append(_eid(where, record[id_key]) if id_key else number)
        labels.append(_LABELS[record[label_key]])
        texts.append(record[text_key])
    table = pl.DataFrame(
        {"eid": eids, "label": labels, "text": texts}, schema={"eid": pl.Int64, "label": pl.Int8, "text": pl.String}
    )
    duplicated = table["eid"].is_duplicated()
    if duplicated.any():
        raise ExtractError(
            f"{path}: {int(duplicated.sum())} records share an id in {id_key!r} (records "
            f"{(duplicated.arg_true() + 1).head(5).to_list()})"
        )
    return table


def _records(path: Path, content: str) -> list:
    if content.lstrip().startswith("["):
        try:
            return json.loads(content)
        except json.JSONDecodeError as err:
            raise ExtractError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    records = []
    for line_number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ExtractError(f"{path}: line {line_number} is not valid JSON ({err.msg})") from None
    return records


def _eid(where: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExtractError(f"{where}: id {value!r} is not an integer") from None
