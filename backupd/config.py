"""The backup configuration: which repository, which data, how often, how much to keep."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from backupd.borg.grammar import check_compression, check_exclude
from backupd.errors import invalid_params
from backupd.params import Param
from backupd.paths import overlapping
from backupd.schedule import ScheduleError, parse_schedule
from backupd.ssh import remote_location
from backupd.settings import DEFAULT_COMPRESSION, DEFAULT_ENCRYPTION, DEFAULT_KEEP, DEFAULT_SCHEDULE, Defaults

# Keyfile modes are left out on purpose: they keep the only copy of the key on the box
# whose loss the backup exists for, and reset erases local secrets.
ENCRYPTIONS = (
    "repokey-blake2",
    "repokey",
    "authenticated-blake2",
    "authenticated",
    "none",
)
# A repository is only created with a passphrase at least this long; an existing repository is
# connected to with the passphrase it already has.
MIN_NEW_PASSPHRASE_LENGTH = 8
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")

CONFIGURE_PARAMS = (
    Param("repository", str),
    Param("passphrase", str, required=True),
    Param("sources", list, item_kind=str),
    Param("exclude", list, item_kind=str),
    Param("schedule", str),
    Param("keep", dict, item_kind=int),
    Param("encryption", str),
    Param("compression", str),
    Param("remote_path", str),
    Param("host_key", str),
    Param("append_only", bool),
    Param("upload_limit", int),
    Param("create", bool),
    Param("mirror", dict),
)
# What `change` may set without the passphrase: the repository, its encryption and its host key
# are chosen by `configure`, which checks the passphrase against them.
CHANGE_PARAMS = tuple(
    param for param in CONFIGURE_PARAMS
    if param.name in ("sources", "exclude", "schedule", "keep", "compression", "remote_path", "append_only",
                      "upload_limit")
)


@dataclass(frozen=True)
class BackupConfig:
    repository: str
    passphrase: str = field(repr=False)
    sources: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    schedule: str = DEFAULT_SCHEDULE
    keep: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_KEEP))
    encryption: str = DEFAULT_ENCRYPTION
    compression: str = DEFAULT_COMPRESSION
    remote_path: str | None = None
    host_key: str | None = None
    append_only: bool = False
    upload_limit: int | None = None  # KiB/s to a remote repository; None: the operator's setting

    def public(self) -> dict[str, Any]:
        """Everything a client may see: the passphrase is only said to be set."""
        view = self.to_record()
        view.pop("passphrase")
        view["passphrase_set"] = bool(self.passphrase)
        return view

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["sources"] = list(self.sources)
        record["exclude"] = list(self.exclude)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BackupConfig:
        return cls(
            repository=record["repository"],
            passphrase=record["passphrase"],
            sources=tuple(record["sources"]),
            exclude=tuple(record.get("exclude", ())),
            schedule=record.get("schedule", DEFAULT_SCHEDULE),
            keep=dict(record.get("keep", DEFAULT_KEEP)),
            encryption=record.get("encryption", DEFAULT_ENCRYPTION),
            compression=record.get("compression", DEFAULT_COMPRESSION),
            remote_path=record.get("remote_path"),
            host_key=record.get("host_key"),
            append_only=record.get("append_only", False),
            upload_limit=record.get("upload_limit"),
        )


def unconfigured_view(defaults: Defaults) -> dict[str, Any]:
    """What `config` shows before configure: the defaults a configure would start from."""
    return {
        "repository": None,
        "passphrase_set": False,
        "sources": list(defaults.sources),
        "exclude": list(defaults.exclude),
        "schedule": defaults.schedule,
        "keep": dict(defaults.keep),
        "encryption": defaults.encryption,
        "compression": defaults.compression,
        "remote_path": None,
        "host_key": None,
        "append_only": False,
        "upload_limit": None,
    }


def config_from_params(
    params: dict[str, Any], defaults: Defaults, current: BackupConfig | None = None
) -> BackupConfig:
    """Validate the values of `configure` options (already checked against CONFIGURE_PARAMS).
    What is missing is kept from the current configuration when it names the same repository,
    else filled from the defaults."""
    if "repository" not in params:
        raise invalid_params("repository", "Missing option 'repository'")
    repository = _repository(params["repository"])
    if current is not None and current.repository == repository:
        base = current
    else:
        base = BackupConfig(
            repository=repository,
            passphrase="",
            sources=() if "sources" in params else _default_sources(defaults.sources),
            exclude=_exclude(list(defaults.exclude)),
            schedule=_schedule(defaults.schedule),
            keep=_keep(dict(defaults.keep)),
            encryption=defaults.encryption,
            compression=_compression(defaults.compression),
            # The authorized_keys line the daemon hands out serves remote repositories append-only.
            append_only=remote_location(repository) is not None,
        )
    changes = {name: value for name, value in params.items() if name not in ("repository", "create", "mirror")}
    if "keep" in changes and base is not current:
        changes["keep"] = {**dict.fromkeys(DEFAULT_KEEP, 0), **changes["keep"]}
    config = changed_config(replace(base, passphrase=_passphrase(params["passphrase"])), changes)
    return replace(
        config,
        encryption=_one_of("encryption", params.get("encryption", base.encryption), ENCRYPTIONS),
        host_key=_host_key(params.get("host_key", base.host_key if base is current else None), repository),
    )


def changed_config(config: BackupConfig, changes: dict[str, Any]) -> BackupConfig:
    """The configuration with the given `change` options (already checked against CHANGE_PARAMS)
    validated and set, and everything else kept. Keep rules not named keep their counts."""
    validators: dict[str, Callable[[Any], Any]] = {
        "sources": _sources,
        "exclude": _exclude,
        "schedule": _schedule,
        "keep": lambda keep: _keep({**config.keep, **keep}),
        "compression": _compression,
        "remote_path": _remote_path,
        "append_only": bool,
        "upload_limit": _upload_limit,
    }
    validated = {name: validators[name](value) for name, value in changes.items() if name in validators}
    return replace(config, **validated)


def _repository(location: str) -> str:
    if not location or location != location.strip() or any(ch in location for ch in "\0\n\r"):
        raise invalid_params("repository", "The repository location is empty or holds control characters")
    if location.startswith("-") or "::" in location:
        raise invalid_params("repository", f"{location!r} is not a repository location")
    if os.path.isabs(location) or remote_location(location) is not None:
        return location
    raise invalid_params(
        "repository",
        f"{location!r} is not a repository location: use an absolute path, "
        "ssh://user@host[:port]/path or user@host:path (with no password: the daemon signs in with its SSH key)",
    )


def _upload_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 0:
        raise invalid_params("upload_limit", "upload_limit (KiB/s) must not be negative; 0 means no limit")
    return limit


def _remote_path(command: str | None) -> str | None:
    if command is not None and (not command.strip() or command.startswith("-") or any(c in command for c in "\0\n\r")):
        raise invalid_params("remote_path", f"{command!r} is not a command for the server")
    return command


def _host_key(fingerprint: str | None, repository: str) -> str | None:
    if fingerprint is None:
        return None
    if remote_location(repository) is None:
        raise invalid_params("host_key", "A host key fingerprint applies to SSH repositories only")
    if not _FINGERPRINT.match(fingerprint):
        raise invalid_params("host_key", f"{fingerprint!r} is not an SSH fingerprint such as SHA256:...")
    return fingerprint


def _passphrase(passphrase: str) -> str:
    if not passphrase:
        raise invalid_params("passphrase", "The passphrase must not be empty")
    if "\n" in passphrase or "\0" in passphrase:
        raise invalid_params("passphrase", "The passphrase must be one line of text")
    return passphrase


def check_new_passphrase(passphrase: str) -> None:
    """The passphrase of a repository about to be created must not be guessable by its length."""
    if len(passphrase) < MIN_NEW_PASSPHRASE_LENGTH:
        raise invalid_params(
            "passphrase",
            f"A new repository needs a passphrase of at least {MIN_NEW_PASSPHRASE_LENGTH} characters",
        )


def _sources(sources: list[str]) -> tuple[str, ...]:
    if not sources:
        raise invalid_params("sources", "Name at least one folder or file to back up")
    for source in sources:
        if not os.path.isabs(source) or "\0" in source:
            raise invalid_params("sources", f"Source {source!r} must be an absolute path")
        if not os.path.lexists(source):
            raise invalid_params("sources", f"Source {source} does not exist")
    normalised = tuple(os.path.normpath(source) for source in sources)
    overlap = overlapping(normalised)
    if overlap is not None:
        outer, inner = overlap
        if outer == inner:
            raise invalid_params("sources", f"Source {outer} is listed twice")
        raise invalid_params("sources", f"Source {inner} is inside source {outer}; list only {outer}")
    return normalised


def _default_sources(sources: tuple[str, ...]) -> tuple[str, ...]:
    """The operator's default sources; none leaves a configuration to restore from, not to back up."""
    return _sources(list(sources)) if sources else ()


def _exclude(patterns: list[str]) -> tuple[str, ...]:
    for pattern in patterns:
        try:
            check_exclude(pattern)
        except ValueError as error:
            raise invalid_params("exclude", str(error)) from None
    return tuple(patterns)


def _schedule(text: str) -> str:
    try:
        parse_schedule(text)
    except ScheduleError as error:
        raise invalid_params("schedule", str(error)) from None
    return " ".join(text.split())


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise invalid_params(name, f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _keep(keep: dict[str, int]) -> dict[str, int]:
    for rule, count in keep.items():
        if rule not in DEFAULT_KEEP:
            raise invalid_params("keep", f"Unknown keep rule {rule!r}: use {', '.join(DEFAULT_KEEP)}")
        if count < 0:
            raise invalid_params("keep", f"keep.{rule} must not be negative")
    merged = dict.fromkeys(DEFAULT_KEEP, 0)
    merged.update(keep)
    return merged


def _compression(value: str) -> str:
    try:
        check_compression(value)
    except ValueError as error:
        raise invalid_params("compression", str(error)) from None
    return value
