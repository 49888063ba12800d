"""Operator settings: a TOML file the daemon only reads. Every key is optional."""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backupctl.protocol import DEFAULT_SOCKET
from backupd.borg.grammar import check_compression, check_exclude

DEFAULT_SETTINGS_FILE = Path("/etc/backupd/backupd.toml")
DEFAULT_STATE_DIR = Path("/var/lib/backupd")
DEFAULT_SCHEDULE = "hourly"
DEFAULT_KEEP = {"hourly": 24, "daily": 7, "weekly": 4, "monthly": 6, "yearly": 0}
DEFAULT_ENCRYPTION = "repokey-blake2"
DEFAULT_COMPRESSION = "lz4"


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


class SettingsError(Exception):
    """The settings file cannot be read or holds a value of the wrong kind; a syntax error
    knows where it is."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Defaults:
    """What a fresh or reset configuration starts from."""

    sources: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    schedule: str = DEFAULT_SCHEDULE
    keep: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_KEEP))
    encryption: str = DEFAULT_ENCRYPTION
    compression: str = DEFAULT_COMPRESSION


@dataclass(frozen=True)
class Access:
    admin_uids: tuple[int, ...] = ()
    admin_groups: tuple[str, ...] = ()
    read_uids: tuple[int, ...] | None = None
    read_groups: tuple[str, ...] | None = None


HookCommand = tuple[str, ...] | str


@dataclass(frozen=True)
class Hooks:
    """Commands run around jobs: an argv list runs as it is, a string runs with /bin/sh -c."""

    before_snapshot: HookCommand | None = None
    after_snapshot: HookCommand | None = None
    before_restore: HookCommand | None = None
    after_restore: HookCommand | None = None
    timeout: int = 600


@dataclass(frozen=True)
class Notify:
    """Where the operator is told about failures, recoveries and problems."""

    command: HookCommand | None = None
    webhook: str | None = None
    healthcheck: str | None = None
    on_success: bool = False
    timeout: int = 10
    retries: int = 3


@dataclass(frozen=True)
class Settings:
    socket: Path = Path(DEFAULT_SOCKET)
    socket_mode: int = 0o660
    socket_group: str | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    borg: tuple[str, ...] = (sys.executable, "-m", "borg")
    borg_base_dir: Path | None = None
    hostname: str | None = None
    timezone: str | None = None
    jitter: int = 300
    ssh_timeout: int = 30
    lock_wait: int = 10
    upload_limit: int = 0
    mirror_stall_seconds: int = 120  # a mirror that gets nowhere this long fails: the service stopped answering
    max_connections: int = 64
    max_connections_per_user: int = 16
    idle_timeout: int = 60
    check_interval_days: int = 30
    defaults: Defaults = field(default_factory=Defaults)
    access: Access = field(default_factory=Access)
    hooks: Hooks = field(default_factory=Hooks)
    notify: Notify = field(default_factory=Notify)
    metrics_file: Path | None = None


def load_settings(path: Path | None) -> Settings:
    """Read settings from path; a missing default file means all defaults."""
    if path is None:
        if not DEFAULT_SETTINGS_FILE.exists():
            return Settings()
        path = DEFAULT_SETTINGS_FILE
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except OSError as error:
        raise SettingsError(f"cannot read settings {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        position = _TOML_POSITION.search(str(error))
        line, column = (int(position[1]), int(position[2])) if position else (None, None)
        raise SettingsError(f"cannot read settings {path}: {error}", line, column) from None
    return parse_settings(raw, base=path.parent)


def parse_settings(raw: dict[str, Any], base: Path = Path(".")) -> Settings:
    reader = _Reader(raw, "")
    settings = Settings(
        socket=_path(reader.get("socket", str, DEFAULT_SOCKET), base),
        socket_mode=_socket_mode(reader.get("socket_mode", str, f"{Settings.socket_mode:04o}")),
        socket_group=reader.get("socket_group", str, None),
        state_dir=_path(reader.get("state_dir", str, str(DEFAULT_STATE_DIR)), base),
        borg=_borg_command(reader.get("borg", (str, list), None)),
        borg_base_dir=_optional_path(reader.get("borg_base_dir", str, None), base),
        hostname=reader.get("hostname", str, None),
        timezone=reader.get("timezone", str, None),
        jitter=_non_negative(reader.get("jitter", int, Settings.jitter), "jitter"),
        ssh_timeout=_non_negative(reader.get("ssh_timeout", int, Settings.ssh_timeout), "ssh_timeout")
        or Settings.ssh_timeout,
        lock_wait=_non_negative(reader.get("lock_wait", int, Settings.lock_wait), "lock_wait"),
        upload_limit=_non_negative(reader.get("upload_limit", int, Settings.upload_limit), "upload_limit"),
        mirror_stall_seconds=_non_negative(
            reader.get("mirror_stall_seconds", int, Settings.mirror_stall_seconds), "mirror_stall_seconds")
        or Settings.mirror_stall_seconds,
        max_connections=_non_negative(reader.get("max_connections", int, Settings.max_connections), "max_connections")
        or Settings.max_connections,
        max_connections_per_user=_non_negative(
            reader.get("max_connections_per_user", int, Settings.max_connections_per_user),
            "max_connections_per_user") or Settings.max_connections_per_user,
        idle_timeout=_non_negative(reader.get("idle_timeout", int, Settings.idle_timeout), "idle_timeout")
        or Settings.idle_timeout,
        check_interval_days=_non_negative(
            reader.get("check_interval_days", int, Settings.check_interval_days), "check_interval_days"),
        defaults=_defaults(reader.section("defaults")),
        access=_access(reader.section("access")),
        hooks=_hooks(reader.section("hooks")),
        notify=_notify(reader.section("notify")),
        metrics_file=_optional_path(reader.get("metrics_file", str, None), base),
    )
    reader.reject_unknown()
    return settings


def _defaults(reader: _Reader) -> Defaults:
    keep = reader.section("keep")
    defaults = Defaults(
        sources=tuple(reader.get_list("sources", ())),
        exclude=tuple(_borg_value(check_exclude, pattern, "defaults.exclude")
                      for pattern in reader.get_list("exclude", ())),
        schedule=reader.get("schedule", str, DEFAULT_SCHEDULE),
        keep={name: keep.get(name, int, default) for name, default in DEFAULT_KEEP.items()},
        encryption=reader.get("encryption", str, DEFAULT_ENCRYPTION),
        compression=_borg_value(check_compression, reader.get("compression", str, DEFAULT_COMPRESSION), "defaults.compression"),
    )
    keep.reject_unknown()
    reader.reject_unknown()
    return defaults


def _borg_value(check: Callable[[str], None], value: str, key: str) -> str:
    try:
        check(value)
    except ValueError as error:
        raise SettingsError(f"setting '{key}': {error}") from None
    return value


def _access(reader: _Reader) -> Access:
    read_uids = reader.get("read_uids", list, None)
    read_groups = reader.get("read_groups", list, None)
    access = Access(
        admin_uids=tuple(reader.get("admin_uids", list, [])),
        admin_groups=tuple(reader.get_list("admin_groups", ())),
        read_uids=tuple(read_uids) if read_uids is not None else None,
        read_groups=tuple(read_groups) if read_groups is not None else None,
    )
    reader.reject_unknown()
    return access


def _hooks(reader: _Reader) -> Hooks:
    names = ("before_snapshot", "after_snapshot", "before_restore", "after_restore")
    commands = {name: _hook_command(reader.get(name, (str, list), None), f"hooks.{name}") for name in names}
    hooks = Hooks(**commands, timeout=_non_negative(reader.get("timeout", int, Hooks.timeout), "hooks.timeout"))
    reader.reject_unknown()
    return hooks


def _hook_command(value: str | list[Any] | None, key: str) -> HookCommand | None:
    if value is None or isinstance(value, str):
        return value or None
    if not value or not all(isinstance(part, str) and part for part in value):
        raise SettingsError(f"setting '{key}' must be a command: a list of strings, or a shell string")
    return tuple(value)


def _notify(reader: _Reader) -> Notify:
    notify = Notify(
        command=_hook_command(reader.get("command", (str, list), None), "notify.command"),
        webhook=_http_url(reader.get("webhook", str, None), "notify.webhook"),
        healthcheck=_http_url(reader.get("healthcheck", str, None), "notify.healthcheck"),
        on_success=reader.get("on_success", bool, Notify.on_success),
        timeout=_positive(reader.get("timeout", int, Notify.timeout), "notify.timeout"),
        retries=_non_negative(reader.get("retries", int, Notify.retries), "notify.retries"),
    )
    reader.reject_unknown()
    return notify


def _http_url(value: str | None, key: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise SettingsError(f"setting '{key}' must be an http:// or https:// URL")
    return value


def _borg_command(value: str | list[Any] | None) -> tuple[str, ...]:
    if value is None:
        return Settings.borg
    command = (value,) if isinstance(value, str) else tuple(value)
    if not command or not all(isinstance(part, str) and part for part in command):
        raise SettingsError("'borg' must be a command: a string or a list of strings")
    return command


def _socket_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise SettingsError(f"setting 'socket_mode' must be an octal mode such as \"0660\", not {text!r}") from None
    if mode & ~0o777:
        raise SettingsError(f"setting 'socket_mode' {text!r} is not a permission mode")
    return mode


def _positive(value: int, key: str) -> int:
    if value <= 0:
        raise SettingsError(f"setting '{key}' must be above 0")
    return value


def _non_negative(value: int, key: str) -> int:
    if value < 0:
        raise SettingsError(f"setting '{key}' must not be negative")
    return value


def _path(value: str, base: Path) -> Path:
    return (base / value).resolve() if not Path(value).is_absolute() else Path(value)


def _optional_path(value: str | None, base: Path) -> Path | None:
    return None if value is None else _path(value, base)


class _Reader:
    """Typed access to one TOML table, remembering which keys were read."""

    def __init__(self, table: dict[str, Any], where: str) -> None:
        self.table = table
        self.where = where
        self.seen: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise SettingsError(f"setting '{self.where}{key}' has the wrong type")
        return value

    def get_list(self, key: str, default: tuple[str, ...]) -> list[str]:
        value: list[str] = self.get(key, list, list(default))
        if not all(isinstance(item, str) for item in value):
            raise SettingsError(f"setting '{self.where}{key}' must be a list of strings")
        return value

    def section(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict, {}), f"{self.where}{key}.")

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise SettingsError(f"unknown setting '{self.where}{unknown[0]}'")
