"""Borg's command lines, built as data: one pure function per borg command.

Every value that reaches borg is literal: borg expands ``{placeholders}`` in repository
locations, archive names and ``--glob-archives``, so braces are doubled, and glob
metacharacters in a prefix are bracketed. Options take their values in ``--option=value``
form and ``--`` precedes the positional arguments, so no value is ever read as an option.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BorgCommand:
    """Everything after the borg executable, and whether stdout carries a ``--json`` result."""

    args: tuple[str, ...]
    json_output: bool
    repository: str | None = None


def init(repository: str, encryption: str) -> BorgCommand:
    _check_repository(repository)
    _check_option_value("encryption", encryption)
    return BorgCommand(
        ("init", f"--encryption={encryption}", "--log-json", "--", _literal(repository)),
        json_output=False,
        repository=repository,
    )


def create(
    repository: str,
    archive: str,
    sources: Sequence[str],
    exclude: Sequence[str] = (),
    compression: str = "lz4",
) -> BorgCommand:
    _check_repository(repository)
    _check_archive(archive)
    _check_option_value("compression", compression)
    if isinstance(sources, str) or not sources:
        raise ValueError("create needs a sequence of at least one source path")
    if any(not source for source in sources):
        raise ValueError("a source path must not be empty")
    if isinstance(exclude, str):
        raise ValueError("exclude must be a sequence of patterns, not one string")
    return BorgCommand(
        (
            "create",
            "--log-json",
            "--progress",
            "--json",
            f"--compression={compression}",
            *(f"--exclude={pattern}" for pattern in exclude),
            "--",
            _archive_location(repository, archive),
            *sources,
        ),
        json_output=True,
        repository=repository,
    )


def list_archives(repository: str, prefix: str | None = None) -> BorgCommand:
    _check_repository(repository)
    glob = () if prefix is None else (f"--glob-archives={_literal(_glob_literal(prefix))}*",)
    return BorgCommand(
        ("list", "--log-json", "--json", *glob, "--", _literal(repository)),
        json_output=True,
        repository=repository,
    )


def info_latest(repository: str) -> BorgCommand:
    _check_repository(repository)
    return BorgCommand(
        ("info", "--log-json", "--json", "--last=1", "--", _literal(repository)),
        json_output=True,
        repository=repository,
    )


def break_lock(repository: str) -> BorgCommand:
    _check_repository(repository)
    return BorgCommand(
        ("break-lock", "--log-json", "--", _literal(repository)),
        json_output=False,
        repository=repository,
    )


def _check_repository(repository: str) -> None:
    _check_not_option_like("repository", repository)
    if "::" in repository:
        raise ValueError(f"repository must not contain '::': {repository!r}")


def _check_archive(archive: str) -> None:
    _check_not_option_like("archive", archive)
    if "/" in archive or "::" in archive:
        raise ValueError(f"archive name must not contain '/' or '::': {archive!r}")


def _check_not_option_like(what: str, value: str) -> None:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if value.startswith("-"):
        raise ValueError(f"{what} must not start with '-': {value!r}")


def _check_option_value(what: str, value: str) -> None:
    if not value:
        raise ValueError(f"{what} must not be empty")


def _archive_location(repository: str, archive: str) -> str:
    return f"{_literal(repository)}::{_literal(archive)}"


def _literal(text: str) -> str:
    """Escape borg's placeholder syntax (str.format) so text reaches borg unchanged."""
    return text.replace("{", "{{").replace("}", "}}")


def _glob_literal(text: str) -> str:
    """Escape borg's shell-pattern metacharacters so text matches only itself."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in text)
