"""Checking the named options of a request against a declared list, with typed errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backupd.errors import invalid_params

MAX_STRING_LENGTH = 4096
MAX_LIST_ITEMS = 1000


class PathName:
    """The kind of an option that names a file: a str, or a bin for a name that is not UTF-8."""


_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", list: "a list", dict: "a map",
               PathName: "a path (a string, or binary for a name that is not UTF-8)"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: type
    required: bool = False
    item_kind: type | None = None


def check_params(params: dict[Any, Any], declared: tuple[Param, ...]) -> dict[str, Any]:
    """Return the params when every key is declared and every value has its declared type."""
    by_name = {param.name: param for param in declared}
    for key in params:
        if not isinstance(key, str) or key not in by_name:
            raise invalid_params(str(key), f"Unknown option {key!r}")
    for param in declared:
        if param.name not in params:
            if param.required:
                raise invalid_params(param.name, f"Missing option {param.name!r}")
            continue
        _check_value(param.name, params[param.name], param.kind, param.item_kind)
    return params


def _check_value(name: str, value: Any, kind: type, item_kind: type | None) -> None:
    if not _is_kind(value, kind):
        raise invalid_params(name, f"Option {name!r} must be {_TYPE_NAMES.get(kind, kind.__name__)}")
    if isinstance(value, (str, bytes)) and len(value) > MAX_STRING_LENGTH:
        raise invalid_params(name, f"Option {name!r} is longer than {MAX_STRING_LENGTH} characters")
    if isinstance(value, (list, dict)) and len(value) > MAX_LIST_ITEMS:
        raise invalid_params(name, f"Option {name!r} has more than {MAX_LIST_ITEMS} items")
    if item_kind is not None:
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            _check_value(name, item, item_kind, None)
        if isinstance(value, dict):
            for key in value:
                _check_value(name, key, str, None)


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return type(value) is int
    if kind is list:
        return isinstance(value, (list, tuple))
    if kind is PathName:
        return isinstance(value, (str, bytes))
    return isinstance(value, kind)
