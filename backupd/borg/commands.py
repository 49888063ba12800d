"""Borg's command lines, built as data: one pure function per borg command.

Every value that reaches borg is literal: borg expands ``{placeholders}`` in repository
locations, archive names and ``--glob-archives``, so braces are doubled, and glob
metacharacters in a prefix are bracketed. Options take their values in ``--option=value``
form and ``--`` precedes the positional arguments, so no value is ever read as an option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from backupd.borg.grammar import check_compression, check_exclude
from backupd.capabilities import Capability
from backupd.settings import DEFAULT_COMPRESSION

# Borg's own order of the time-period rules, coarsest last.
KEEP_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")
# The forms of `--timestamp` borg reads as UTC; anything else borg would try as a file path.
_TIMESTAMP = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|\+00:00)?\Z")


# What borg keeps of the daemon's capabilities, by the work a command does. borg runs as uid 0,
# so files and folders root owns (its cache, a repository it made) need none of them.
# A local repository may lie in a folder another user owns (a USB disk mounted for its user).
REPOSITORY_ACCESS = frozenset({Capability.DAC_OVERRIDE})
# Reading every file and folder; O_NOATIME on others' files fails, and borg opens them again without.
READING_EVERYTHING = frozenset({Capability.DAC_READ_SEARCH})
# Writing files back with their owners, modes (set-uid and set-gid bits included), times,
# ACLs and extended attributes (security.capability too), into folders whatever their modes,
# and device nodes.
RESTORING = frozenset({
    Capability.CHOWN, Capability.DAC_OVERRIDE, Capability.DAC_READ_SEARCH, Capability.FOWNER,
    Capability.FSETID, Capability.MKNOD, Capability.SETFCAP,
})


@dataclass(frozen=True)
class BorgCommand:
    """Everything after the borg executable, whether stdout carries a ``--json`` result, and the
    capabilities borg keeps for it (none unless declared)."""

    args: tuple[str, ...]
    json_output: bool
    repository: str | None = None
    capabilities: frozenset[Capability] = frozenset()
    output_encoding: str = "utf-8"  # of borg's stdout and stderr (PYTHONIOENCODING)


def _needs(repository: str, work: frozenset[Capability] = frozenset()) -> frozenset[Capability]:
    """The capabilities of a command that does ``work`` with ``repository``; a remote one is
    reached through ssh and needs none here."""
    local = repository.startswith(("/", "file://"))
    return work | REPOSITORY_ACCESS if local else work


def init(repository: str, encryption: str) -> BorgCommand:
    _check_repository(repository)
    _check_option_value("encryption", encryption)
    return BorgCommand(
        ("init", f"--encryption={encryption}", "--log-json", "--", _literal(repository)),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository),
    )


def create(
    repository: str,
    archive: str,
    sources: Sequence[str],
    exclude: Sequence[str] = (),
    compression: str = DEFAULT_COMPRESSION,
    *,
    timestamp: str | None = None,
    upload_limit: int = 0,
) -> BorgCommand:
    """``timestamp`` (UTC, ``YYYY-MM-DDTHH:MM:SS``) dates the archive instead of now;
    ``upload_limit`` caps what goes to a remote repository, in KiB/s (0: no cap)."""
    _check_repository(repository)
    _check_archive(archive)
    check_compression(compression)
    if timestamp is not None and not _TIMESTAMP.match(timestamp):
        raise ValueError(f"timestamp must be UTC YYYY-MM-DDTHH:MM:SS: {timestamp!r}")
    if isinstance(sources, str) or not sources:
        raise ValueError("create needs a sequence of at least one source path")
    if any(not source for source in sources):
        raise ValueError("a source path must not be empty")
    if isinstance(exclude, str):
        raise ValueError("exclude must be a sequence of patterns, not one string")
    for pattern in exclude:
        check_exclude(pattern)
    if upload_limit < 0:
        raise ValueError(f"upload_limit must not be negative: {upload_limit}")
    return BorgCommand(
        (
            "create",
            "--log-json",
            "--progress",
            "--json",
            f"--compression={compression}",
            *(() if timestamp is None else (f"--timestamp={timestamp}",)),
            *((f"--upload-ratelimit={upload_limit}",) if upload_limit else ()),
            *(f"--exclude={pattern}" for pattern in exclude),
            "--",
            _archive_location(repository, archive),
            *sources,
        ),
        json_output=True,
        repository=repository,
        capabilities=_needs(repository, READING_EVERYTHING),
    )


def list_archives(repository: str, checkpoints: bool = False) -> BorgCommand:
    """Every archive; with ``checkpoints``, the checkpoints of interrupted snapshots too."""
    _check_repository(repository)
    return BorgCommand(
        ("list", "--log-json", "--json", *_consider_checkpoints(checkpoints), "--", _literal(repository)),
        json_output=True,
        repository=repository,
        capabilities=_needs(repository),
    )


def info_latest(repository: str) -> BorgCommand:
    _check_repository(repository)
    return BorgCommand(
        ("info", "--log-json", "--json", "--last=1", "--", _literal(repository)),
        json_output=True,
        repository=repository,
        capabilities=_needs(repository),
    )


def info_repository(repository: str) -> BorgCommand:
    """The repository's own facts: its encryption mode, its cache statistics."""
    _check_repository(repository)
    return BorgCommand(
        ("info", "--log-json", "--json", "--", _literal(repository)),
        json_output=True,
        repository=repository,
        capabilities=_needs(repository),
    )


def info_archive(repository: str, archive: str) -> BorgCommand:
    _check_repository(repository)
    _check_archive(archive)
    return BorgCommand(
        ("info", "--log-json", "--json", "--", _archive_location(repository, archive)),
        json_output=True,
        repository=repository,
        capabilities=_needs(repository),
    )


# borg writes its output with errors="replace", turning each byte of a name that is not UTF-8
# into "?" (even the verbatim {bpath}, and --json-lines has no such key). UTF-7 encodes the
# surrogates that stand for those bytes, so the names come through exactly.
EXACT_NAMES_ENCODING = "utf-7"


# Each item's fields, then its verbatim path and a link's target, each ended by NUL: neither holds NUL.
TREE_FIELDS = ("type", "mode", "uid", "gid", "user", "group", "size", "mtime")
_TREE_FORMAT = ("{type}{TAB}{mode}{TAB}{uid}{TAB}{gid}{TAB}{user}{TAB}{group}{TAB}{size}{TAB}{isomtime}"
                "{TAB}{bpath}{NUL}{source}{NUL}")


def list_tree(repository: str, archive: str, exact_paths: Sequence[str] = ()) -> BorgCommand:
    """Every item of an archive with the fields of TREE_FIELDS and exact names; with
    ``exact_paths``, only the items at exactly those archive paths (not what they hold)."""
    _check_repository(repository)
    _check_archive(archive)
    _check_archive_paths(exact_paths)
    only = (*(f"--pattern=+pf:{path}" for path in exact_paths), "--pattern=-sh:**") if exact_paths else ()
    return BorgCommand(
        ("list", "--log-json", f"--format={_TREE_FORMAT}", *only, "--", _archive_location(repository, archive)),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository),
        output_encoding=EXACT_NAMES_ENCODING,
    )


def diff_archives(repository: str, older: str, newer: str) -> BorgCommand:
    """What changed from archive ``older`` to ``newer``, one JSON object per stdout line; borg's
    JSON escapes a name that is not UTF-8 as surrogates, so names are exact."""
    _check_repository(repository)
    _check_archive(older)
    _check_archive(newer)
    return BorgCommand(
        ("diff", "--log-json", "--json-lines", "--", _archive_location(repository, older), _literal(newer)),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository),
    )


def extract(repository: str, archive: str, paths: Sequence[str] = ()) -> BorgCommand:
    """Extract into the working directory; paths are archive paths (no leading slash).

    ``--list`` names each item as it is extracted. ``--progress`` is left out on purpose: it
    makes borg read the whole archive's metadata once more, before extracting, to size itself.
    ``--sparse`` writes all-zero chunks as holes, so a sparse disk image comes back sparse.
    """
    _check_repository(repository)
    _check_archive(archive)
    _check_archive_paths(paths)
    return BorgCommand(
        ("extract", "--log-json", "--list", "--sparse", "--", _archive_location(repository, archive), *paths),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository, RESTORING),
    )


def key_export(repository: str) -> BorgCommand:
    """The repository key, as borg's export file, on stdout."""
    _check_repository(repository)
    return BorgCommand(("key", "export", "--log-json", "--", _literal(repository)), json_output=False,
                       repository=repository, capabilities=_needs(repository))


def _check_archive_paths(paths: Sequence[str]) -> None:
    if isinstance(paths, str):
        raise ValueError("paths must be a sequence of archive paths, not one string")
    for path in paths:
        if not path or path.startswith("/") or "\0" in path:
            raise ValueError(f"an archive path is relative and not empty: {path!r}")


def prune(repository: str, archive_glob: str, keep: Mapping[str, int], dry_run: bool = False) -> BorgCommand:
    """Delete the archives matching the borg shell pattern ``archive_glob`` that no keep rule
    holds; ``--list`` logs each decision.

    Rules with a count of 0 are left out; at least one must be above 0.
    """
    _check_repository(repository)
    _check_archive_glob(archive_glob)
    return BorgCommand(
        (
            "prune",
            "--log-json",
            "--list",
            *(("--dry-run",) if dry_run else ()),
            f"--glob-archives={_literal(archive_glob)}",
            *_keep_options(keep),
            "--",
            _literal(repository),
        ),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository),
    )


def delete_archives(repository: str, archive_glob: str) -> BorgCommand:
    """Delete the archives and checkpoints matching the borg shell pattern ``archive_glob``
    (never the whole repository: the pattern is always given)."""
    _check_repository(repository)
    _check_archive_glob(archive_glob)
    return BorgCommand(
        (
            "delete",
            "--log-json",
            f"--glob-archives={_literal(archive_glob)}",
            "--",
            _literal(repository),
        ),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository),
    )


def _consider_checkpoints(checkpoints: bool) -> tuple[str, ...]:
    return ("--consider-checkpoints",) if checkpoints else ()


def _check_archive_glob(archive_glob: str) -> None:
    """A pattern that names some archives, never all of them by accident."""
    if not archive_glob.strip("*"):
        raise ValueError(f"an archive pattern must name some archives, not all: {archive_glob!r}")
    if any(char in archive_glob for char in "\0\n\r"):
        raise ValueError(f"an archive pattern holds no NUL or line break: {archive_glob!r}")


def compact(repository: str) -> BorgCommand:
    _check_repository(repository)
    return BorgCommand(
        ("compact", "--log-json", "--progress", "--", _literal(repository)),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository),
    )


def check(repository: str) -> BorgCommand:
    """Verify the repository's segments and every archive's metadata; never repairs."""
    _check_repository(repository)
    return BorgCommand(
        ("check", "--log-json", "--progress", "--", _literal(repository)),
        json_output=False,
        repository=repository,
        capabilities=_needs(repository),
    )


def _keep_options(keep: Mapping[str, int]) -> list[str]:
    unknown = sorted(set(keep) - set(KEEP_RULES))
    if unknown:
        raise ValueError(f"unknown keep rule {unknown[0]!r}: use {', '.join(KEEP_RULES)}")
    for rule, count in keep.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"keep {rule} must be a count of 0 or more: {count!r}")
    options = [f"--keep-{rule}={keep[rule]}" for rule in KEEP_RULES if keep.get(rule, 0) > 0]
    if not options:
        raise ValueError("prune needs at least one keep rule above 0; otherwise it would delete every archive")
    return options


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
