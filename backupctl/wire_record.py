"""Typed records read from and written to wire maps, each field checked against its annotation.

A record's fields are its wire keys (a key that is not a Python name, such as `from`, is given
with `field(metadata=wire_key(...))`). Reading (`from_wire`) keeps what a newer daemon adds in
`extra` and remembers which fields the map left out in `absent`, so that `to_wire` gives back
the very map it read. A record built in code leaves out its `sometimes()` fields that are None.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from functools import cache
from typing import Any, Self

OMITTED_WHEN_NONE = "omitted_when_none"
WIRE_NAME = "wire_name"


class RecordError(ValueError):
    """A wire value that does not have the shape of its record: where, and what was found."""


def sometimes(default: Any = None) -> Any:
    """A field the daemon sends only where it applies (a progress map's fields, a problem's extras)."""
    return field(default=default, metadata={OMITTED_WHEN_NONE: True})


def wire_key(key: str) -> dict[str, str]:
    """The metadata of a field whose wire key is not a Python name (the `from` of a comparison)."""
    return {WIRE_NAME: key}


@dataclass(frozen=True)
class WireRecord:
    absent: frozenset[str] | None = field(default=None, kw_only=True, repr=False, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        if not isinstance(value, Mapping):
            raise RecordError(f"{cls.__name__}: expected a map, got {_type_name(value)}")
        hints = _hints(cls)  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        absent: set[str] = set()
        for wire_field in _wire_fields(cls):  # type: ignore[arg-type]
            name, key = wire_field.name, _key(wire_field)
            if key in value:
                values[name] = convert(hints[name], value[key], f"{cls.__name__}.{key}")
            elif wire_field.default is not MISSING or wire_field.default_factory is not MISSING:
                absent.add(name)
            else:
                raise RecordError(f"{cls.__name__}: the field {key!r} is missing")
        keys = {_key(wire_field) for wire_field in _wire_fields(cls)}  # type: ignore[arg-type]
        extra = {key: item for key, item in value.items() if key not in keys}
        return cls(**values, absent=frozenset(absent), extra=extra)

    def sent(self, name: str) -> bool:
        """Whether the map this record was read from had the field (a record built in code has them all)."""
        return self.absent is None or name not in self.absent

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        for wire_field in _wire_fields(type(self)):  # type: ignore[arg-type]
            value = getattr(self, wire_field.name)
            if self.absent is not None:
                if wire_field.name in self.absent:
                    continue
            elif value is None and wire_field.metadata.get(OMITTED_WHEN_NONE):
                continue
            wire[_key(wire_field)] = plain(value)
        wire.update(self.extra)
        return wire


@cache
def _wire_fields(cls: type[WireRecord]) -> tuple[Any, ...]:
    return tuple(wire_field for wire_field in fields(cls) if wire_field.name not in ("absent", "extra"))


def _key(wire_field: Any) -> str:
    key: str = wire_field.metadata.get(WIRE_NAME, wire_field.name)
    return key


@cache
def _hints(cls: type[WireRecord]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def convert(hint: Any, value: Any, where: str) -> Any:
    """value, checked against the type hint; maps become records, known strings enum members."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _convert_union(typing.get_args(hint), value, where)
    if isinstance(hint, type) and issubclass(hint, WireRecord):
        try:
            return hint.from_wire(value)
        except RecordError as error:
            raise RecordError(f"{where}: {error}") from None
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        if isinstance(value, str) and value in hint._value2member_map_:
            return hint(value)
        raise RecordError(f"{where}: expected one of {', '.join(hint)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {_type_name(value)}")
        (item_hint,) = typing.get_args(hint)
        return [convert(item_hint, item, f"{where}[{index}]") for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise RecordError(f"{where}: expected a map, got {_type_name(value)}")
        _, item_hint = typing.get_args(hint)
        return {key: convert(item_hint, item, f"{where}.{key}") for key, item in value.items()}
    if hint is type(None):
        if value is not None:
            raise RecordError(f"{where}: expected nil, got {_type_name(value)}")
        return value
    accepted = (int, float) if hint is float else hint
    if not isinstance(value, accepted) or (hint in (int, float) and isinstance(value, bool)):
        raise RecordError(f"{where}: expected {hint.__name__}, got {_type_name(value)}")
    return value


def _convert_union(members: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in members:
        return None
    errors = []
    for member in members:
        if member is type(None):
            continue
        try:
            return convert(member, value, where)
        except RecordError as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    names = " or ".join(_hint_name(member) for member in members)
    raise RecordError(f"{where}: expected {names}, got {_type_name(value)}")


def plain(value: Any) -> Any:
    """What goes on the wire for a field's value: records as maps, enum members as their strings."""
    if isinstance(value, WireRecord):
        return value.to_wire()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def _hint_name(hint: Any) -> str:
    return "nil" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    return "nil" if value is None else type(value).__name__
