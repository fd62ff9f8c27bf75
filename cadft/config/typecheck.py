"""Plain config values (dicts, lists, scalars) checked against dataclass type hints, with one-line messages.

A dataclass is a mapping with exactly its fields (those with a default may be absent); `Annotated[int, Range(low=1)]`
is an integer >= 1, `Literal[...]` one of the choices (a close miss is suggested), `X | None` also allows null, and a
`Variants` mark picks the dataclass of a mapping by one of its keys (config groups whose options differ in shape).
Every failure is a CadftError naming the dotted key, the value and what is allowed. `build` turns a checked value
into its typed form (dataclass instances), `plain` turns it back.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from cadft.errors import CadftError

MISSING = "???"  # OmegaConf's mandatory value: the option file leaves it to the command line


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def ok(self, value) -> bool:
        return (self.low is None or value > self.low or (not self.low_open and value == self.low)) and (
            self.high is None or value < self.high or (not self.high_open and value == self.high)
        )

    @property
    def text(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {show(self.low)}"
        return f"in {'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]
    text: str


@dataclass(frozen=True)
class Describe:
    """What the key allows, in words, in place of the text made from its type."""

    text: str


@dataclass(frozen=True)
class Variants:
    """A group whose options differ in shape: `key`'s value picks the dataclass."""

    key: str
    options: Mapping[Any, type]


def hint_at(root: type, key: str):
    """The type hint of a dotted key below the dataclass `root` (the first variant's when variants differ); CadftError
    for an unknown part."""
    hint, path = root, []
    for part in key.split("."):
        classes = _classes(hint)
        if classes:
            known = {
                f.name: typing.get_type_hints(c, include_extras=True)[f.name]
                for c in reversed(classes)
                for f in dataclasses.fields(c)
            }
            if part not in known:
                raise CadftError(_unknown(".".join(path), part, list(known)))
            hint = known[part]
        elif typing.get_origin(_base(hint)) is dict:
            hint = typing.get_args(_base(hint))[1]
        else:
            raise CadftError(f"{'.'.join(path)} is {describe(hint)}: it has no key {part}")
        path.append(part)
    return hint


def _classes(hint) -> list[type]:
    """The dataclasses a hint allows a mapping to be (all variants of a Variants group)."""
    for mark in _marks(hint):
        if isinstance(mark, Variants):
            return list(mark.options.values())
    base = _base(hint)
    arms = typing.get_args(base) if _is_union(base) else (base,)
    return [arm for arm in arms if dataclasses.is_dataclass(arm)]


def check(value, hint, key: str) -> None:
    if isinstance(value, str) and value == MISSING:
        raise CadftError(f"{key}=???: a value is required ({describe(hint)}); give {key}=...")
    variants = next((m for m in _marks(hint) if isinstance(m, Variants)), None)
    if variants is not None and isinstance(value, Mapping):
        choice = value.get(variants.key)
        option = next((cls for v, cls in variants.options.items() if v == choice and type(v) is type(choice)), None)
        if option is None:
            allowed = ", ".join(show(v) for v in variants.options)
            raise CadftError(f"{key}.{variants.key}={show(choice)}: expected one of {allowed}")
        return _check_mapping(value, option, key, variants)
    classes = _classes(hint)
    if len(classes) == 1 and isinstance(value, Mapping):
        return _check_mapping(value, classes[0], key)
    if not fits(value, hint):
        raise CadftError(f"{key}={show(value)}: expected {describe(hint)}{suggestion(value, hint)}")


def _check_mapping(value: Mapping, cls: type, key: str, variants: Variants | None = None) -> None:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in value:
        if name not in fields:
            if variants is not None:
                owners = [
                    show(v)
                    for v, option in variants.options.items()
                    if name in {f.name for f in dataclasses.fields(option)}
                ]
                if owners:
                    raise CadftError(
                        f"{_join(key, name)}: only for {key}.{variants.key}={' or '.join(owners)}, "
                        f"not {key}.{variants.key}={show(value[variants.key])}"
                    )
            raise CadftError(_unknown(key, str(name), list(fields)))
    for name, field in fields.items():
        if name in value:
            check(value[name], hints[name], _join(key, name))
        elif field.default is dataclasses.MISSING:
            raise CadftError(f"{_join(key, name)}: missing; expected {describe(hints[name])}")


def build(value, hint):
    """A value that `check` accepted, in its typed form: a mapping of a dataclass hint becomes an instance of that
    dataclass (a Variants mark picks it by its key; absent fields take their defaults), an integer where a number is
    expected a float; lists and other mappings keep their shape, their items built the same way."""
    if value is None:
        return None
    variants = next((m for m in _marks(hint) if isinstance(m, Variants)), None)
    if variants is not None and isinstance(value, Mapping):
        choice = value.get(variants.key)
        return _instance(
            value, next(cls for v, cls in variants.options.items() if v == choice and type(v) is type(choice))
        )
    base = _base(hint)
    if _is_union(base):
        return build(value, next(arm for arm in typing.get_args(base) if arm is not type(None) and fits(value, arm)))
    if dataclasses.is_dataclass(base):
        return _instance(value, base)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is list:
        return [build(item, args[0]) for item in value]
    if origin is dict:
        return {key: build(item, args[1]) for key, item in value.items()}
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _instance(value: Mapping, cls: type):
    hints = typing.get_type_hints(cls, include_extras=True)
    return cls(**{f.name: build(value[f.name], hints[f.name]) for f in dataclasses.fields(cls) if f.name in value})


def plain(typed):
    """A typed config (or part of it) as plain dicts, lists and scalars: what YAML, JSON and MLflow params hold."""
    return dataclasses.asdict(typed) if dataclasses.is_dataclass(typed) else typed


def fits(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin is Annotated:
        return fits(value, args[0]) and all(mark.ok(value) for mark in args[1:] if isinstance(mark, (Range, Rule)))
    if _is_union(hint):
        return any(fits(value, arm) for arm in args)
    if origin is Literal:
        return any(value == choice and type(value) is type(choice) for choice in args)
    if origin is list:
        return isinstance(value, list) and all(fits(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, Mapping) and all(fits(k, args[0]) and fits(v, args[1]) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            return False
        try:
            _check_mapping(value, hint, "")
        except CadftError:
            return False
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def describe(hint, plural: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        marks = args[1:]
        described = next((m.text for m in marks if isinstance(m, Describe)), None)
        if described:
            return described
        text = describe(args[0], plural)
        for mark in marks:
            if isinstance(mark, Range):
                text += f" {mark.text}"
            elif isinstance(mark, Rule) and mark.text:
                text += f", {mark.text}"
        return text
    if _is_union(hint):
        arms = [describe(arm, plural) for arm in args]
        return ", ".join(arms[:-1]) + " or " + arms[-1]
    if origin is Literal:
        choices = ", ".join(show(c) for c in args)
        return choices if len(args) == 1 else f"one of {choices}"
    if origin is list:
        if typing.get_origin(args[0]) is Literal:
            return f"a list, each {describe(args[0])}"
        return f"a list of {describe(args[0], plural=True)}" if not plural else "lists"
    if origin is dict or hint is Any:
        return "mappings" if plural else "a mapping"
    if dataclasses.is_dataclass(hint):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}"
    nouns = {
        int: ("an integer", "integers"),
        float: ("a number", "numbers"),
        str: ("text", "texts"),
        bool: ("true or false", "true or false"),
        type(None): ("null", "null"),
    }
    return nouns.get(hint if hint is not None else type(None), (str(hint), str(hint)))[plural]


def suggestion(value, hint) -> str:
    """` (did you mean youden?)` for a near miss of a choice; for a list, of its first item that is no choice."""
    choices = [c for c in _literals(hint) if isinstance(c, str)]
    misses = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v not in choices]
    close = difflib.get_close_matches(misses[0], choices, n=1) if misses else []
    if not close:
        return ""
    return (
        f" (did you mean {close[0]}?)" if not isinstance(value, list) else f" ({misses[0]}: did you mean {close[0]}?)"
    )


def _literals(hint) -> list:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return list(args)
    if origin is Annotated:
        return _literals(args[0])
    if _is_union(hint) or origin is list:
        return [c for arm in args for c in _literals(arm)]
    return []


def _unknown(parent: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"{_join(parent, name)}: unknown key; did you mean {_join(parent, close[0])}?"
    return f"{_join(parent, name)}: unknown key; {parent or 'the config'} has: {', '.join(known)}"


def _marks(hint) -> tuple:
    return typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ()


def _base(hint):
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _join(parent: str, name) -> str:
    return f"{parent}.{name}" if parent else str(name)


def show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def first_line(err: Exception) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
