"""The UK Biobank field registry: titles, units, types, codings and array widths, read from fields.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

REGISTRY_FILE = Path(__file__).with_name("fields.yaml")
VALUE_TYPES = ("continuous", "integer", "categorical", "date", "code")


@dataclass(frozen=True)
class Field:
    """One Showcase field as cadft reads it."""

    id: int
    title: str
    type: str
    units: str = ""
    coding: str | None = None
    instanced: bool = True
    arrays: int = 1
    multi: bool = False
    paired_with: int | None = None
    signed: bool = False  # numbers below zero are values (Townsend index), not UK Biobank special codes
    labels: dict[int, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_list(self) -> bool:
        """Read as a list per participant (multi-select or several array slots)."""
        return self.multi or self.arrays > 1

    def label(self, code: int) -> str | None:
        return self.labels.get(code)


class UnknownFieldError(KeyError):
    pass


@lru_cache(maxsize=4)
def load_registry(path: str | Path = REGISTRY_FILE) -> dict[int, Field]:
    raw = yaml.safe_load(Path(path).read_text())
    codings = {name: {int(k): str(v) for k, v in (table or {}).items()} for name, table in raw["codings"].items()}
    registry: dict[int, Field] = {}
    for fid, spec in raw["fields"].items():
        if spec["type"] not in VALUE_TYPES:
            raise ValueError(f"{path}: field {fid} has type {spec['type']!r}; allowed: {', '.join(VALUE_TYPES)}")
        coding = spec.get("coding")
        if coding is not None and coding not in codings:
            raise ValueError(f"{path}: field {fid} names coding {coding!r}, which is not under `codings:`")
        registry[int(fid)] = Field(
            id=int(fid),
            title=spec["title"],
            type=spec["type"],
            units=spec.get("units", "") or "",
            coding=coding,
            instanced=spec.get("instanced", True),
            arrays=int(spec.get("arrays", 1)),
            multi=bool(spec.get("multi", False)),
            paired_with=spec.get("paired_with"),
            signed=bool(spec.get("signed", False)),
            labels=codings.get(coding, {}) if coding else {},
        )
    return registry


def get_field(field_id: int) -> Field:
    registry = load_registry()
    if field_id not in registry:
        raise UnknownFieldError(
            f"field {field_id} is not in the registry {REGISTRY_FILE}; add its title, type and coding there"
        )
    return registry[field_id]
