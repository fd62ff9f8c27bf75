"""The prepared-data cache: one folder per extract and settings under `paths.prepared_dir`, holding the prepared table
(`data.parquet`), its data card (`data_card.json`) and a manifest written last with the size and SHA-256 of both, so
an entry that no longer matches it (a truncated copy, a damaged disk) is known to be damaged and built again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import polars as pl

from cadft.config.schema import Config
from cadft.config.typecheck import plain
from cadft.data.ukb.withdrawals import content_digest
from cadft.errors import CadftError

MANIFEST = "manifest.json"
UNKEYED_DATA = ("path", "withdrawals", "oracle_path", "oracle_task")  # where files are; their content is keyed
TABLE_FILE = "data.parquet"
CARD_FILE = "data_card.json"
PREPARE_VERSION = (
    5  # bump when the prepared table changes for the same input and config (2: NaN and special codes; 3: split by
)
# eid hash only, follow-up rules and cohort_steps; 4: follow-up time and status; 5: the numeric features' special
# answers kept, <name>:special)


@dataclass(frozen=True)
class Prepared:
    directory: Path
    key: str

    @property
    def table_path(self) -> Path:
        return self.directory / TABLE_FILE

    @property
    def card_path(self) -> Path:
        return self.directory / CARD_FILE

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def table(self) -> pl.DataFrame:
        return pl.read_parquet(self.table_path)

    @cached_property
    def card(self) -> dict:
        return json.loads(self.card_path.read_text())

    def damage(self) -> str | None:
        """Why this cache entry cannot be used, or None when its files match the manifest."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
            recorded = {name: manifest["files"][name] for name in (TABLE_FILE, CARD_FILE)}
        except FileNotFoundError:
            return f"{MANIFEST} is missing"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"{MANIFEST} is unreadable ({type(err).__name__}: {err})"
        for name, expected in recorded.items():
            path = self.directory / name
            if not path.is_file():
                return f"{name} is missing"
            if digest(path) != expected:
                return f"{name} does not match its size and SHA-256 in {MANIFEST}"
        return None


def entry(config: Config) -> Prepared:
    """Where the prepared table of this config lives in the cache (whether or not it is built yet)."""
    key = cache_key(config)
    slug = "seed_json" if config.data.format == "seed_json" else config.task.name
    return Prepared(Path(config.paths.prepared_dir).resolve() / f"{slug}-{key[:12]}", key)


def cache_key(config: Config) -> str:
    """A hash of the input file's content (cadft.data.fingerprint), the withdrawals file's content and the data, task,
    text and tokenizer settings; not of where the files are (data.path, data.withdrawals), nor of the oracle, which is
    not prepared (its default path follows paths.output_dir: every working folder would prepare again)."""
    from cadft.data.fingerprint import extract_digest

    path = Path(config.data.path).resolve()
    if not path.is_file():
        raise CadftError(f"data.path={config.data.path}: no such file")
    settings = {k: v for k, v in plain(config.data).items() if k not in UNKEYED_DATA}
    identity = {
        "version": PREPARE_VERSION,
        "file": [extract_digest(path, Path(config.paths.prepared_dir)), path.stat().st_size],
        "withdrawals": content_digest(config.data.withdrawals),
        "data": settings,
        "task": plain(config.task),
        "text": plain(config.text),
        "tokenizer": plain(config.backbone),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def write_entry(folder: Path, key: str, table: pl.DataFrame, card: dict) -> None:
    """The table, the card and, last, the manifest into `folder` (a staging folder, renamed into place afterwards)."""
    table.write_parquet(folder / TABLE_FILE)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    files = {name: digest(folder / name) for name in (TABLE_FILE, CARD_FILE)}
    (folder / MANIFEST).write_text(json.dumps({"cache_key": key, "files": files}, indent=2) + "\n")


def digest(path: Path) -> dict:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}
