"""Running borg as the daemon configures it: its passphrase, the daemon's SSH key, borg's own
folder, the lock wait, and the job log of whoever runs it."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Awaitable, Callable
from itertools import takewhile
from pathlib import Path
from typing import Any

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.borg.commands import BorgCommand
from backupd.borg.errors import BorgFailed
from backupd.borg.log_json import BorgEvent, LogMessage
from backupd.borg.runner import BorgResult, run_borg
from backupd.borg.transactions import repository_marker
from backupd.config import BackupConfig
from backupd.jobs import job_log
from backupd.settings import Settings
from backupd.ssh import SSH_FOLDER, SshIdentity, remote_location
from backupd.ssh_probe import diagnose

# borg's words for a link that failed; ssh itself is asked which way it failed.
_MAYBE_SSH_FAILURES = frozenset({ErrorCode.REPOSITORY_UNREACHABLE, ErrorCode.AUTH_FAILED, ErrorCode.HOST_KEY_CHANGED})


class BorgInvoker:
    def __init__(
        self,
        settings: Callable[[], Settings],
        config: Callable[[], BackupConfig],
        redact: Callable[[str], str],
        storage_error: Callable[[OSError], RpcError],
    ) -> None:
        """``config`` gives the configuration (or raises not_configured); ``storage_error``
        types a state folder that cannot be written."""
        self._settings = settings
        self._config = config
        self._redact = redact
        self._storage_error = storage_error
        # What the repository looked like after the daemon's own work: a later change is someone else's.
        self.marker: tuple[str, ...] | None = None

    async def run(
        self,
        command: BorgCommand,
        config: BackupConfig | None = None,
        on_event: Callable[[BorgEvent], None] | None = None,
        env: dict[str, str] | None = None,
        low_priority: bool = False,
        cwd: str | None = None,
        on_start: Callable[[int], None] | None = None,
        on_stdout: Callable[[bytes], Awaitable[None]] | None = None,
        read_json: Callable[[Any], Any] | None = None,
    ) -> BorgResult:
        """Run one borg command against the configured (or the given) repository.

        ``low_priority`` runs borg under ``nice -n 19`` and ``ionice -c 3`` where those exist,
        so a long maintenance run leaves CPU and disk to the box's own services.
        """
        config = config or self._config()
        settings = self._settings()
        try:
            return await run_borg(
                command,
                borg=(*(_low_priority(settings.borg) if low_priority else settings.borg),
                      f"--lock-wait={settings.lock_wait}"),
                passphrase=config.passphrase,
                on_event=_logging_to_job(command, on_event),
                env={"BORG_BASE_DIR": str(self.base_dir()), **await self._remote_env(config), **(env or {})},
                cwd=cwd,
                on_start=on_start,
                on_stdout=on_stdout,
                read_json=read_json,
            )
        except BorgFailed as failure:
            if failure.code in _MAYBE_SSH_FAILURES:
                reason = await self._ssh_reason(config)
                if reason is not None:
                    raise RpcError(reason.code, self._redact(reason.message),
                                   {**failure.data, **reason.data,
                                    "ssh": [self._redact(line) for line in reason.data["ssh"]]}) from None
            raise
        finally:
            self.marker = await trio.to_thread.run_sync(repository_marker, config.repository)

    async def _ssh_reason(self, config: BackupConfig) -> RpcError | None:
        """Why an SSH repository could not be used, found with ssh itself; None for a local one,
        or when ssh and borg answer there now."""
        server = remote_location(config.repository)
        if server is None:
            return None
        identity = await self.ensure_ssh_identity()
        return await trio.to_thread.run_sync(
            diagnose, identity, server, config.remote_path, self._settings().ssh_timeout, config.repository)

    @property
    def ssh(self) -> SshIdentity:
        return SshIdentity(self._settings().state_dir / SSH_FOLDER)

    async def ensure_ssh_identity(self) -> SshIdentity:
        identity = self.ssh
        comment = f"backupd@{self._settings().hostname or socket.gethostname()}"
        try:
            await trio.to_thread.run_sync(identity.ensure, comment)
        except OSError as error:
            raise self._storage_error(error) from None
        return identity

    async def _remote_env(self, config: BackupConfig) -> dict[str, str]:
        if remote_location(config.repository) is None:
            return {}
        identity = await self.ensure_ssh_identity()
        env = {"BORG_RSH": identity.borg_rsh(self._settings().ssh_timeout)}
        if config.remote_path:
            env["BORG_REMOTE_PATH"] = config.remote_path
        return env

    def base_dir(self) -> Path:
        """Where borg keeps its cache and security records for this daemon."""
        settings = self._settings()
        return settings.borg_base_dir or settings.state_dir / "borg"


def _logging_to_job(
    command: BorgCommand, on_event: Callable[[BorgEvent], None] | None
) -> Callable[[BorgEvent], None] | None:
    """The log of the job that runs borg, if any, says which borg command ran, then its warnings and errors."""
    write_log = job_log()
    if write_log is None:
        return on_event
    write_log("INFO", "running borg " + " ".join(takewhile(lambda arg: not arg.startswith("-"), command.args)))

    def on_borg_event(event: BorgEvent) -> None:
        if isinstance(event, LogMessage) and event.at_least_warning:
            write_log(event.levelname, event.message)
        if on_event is not None:
            on_event(event)

    return on_borg_event


def _low_priority(borg: tuple[str, ...]) -> tuple[str, ...]:
    """The borg argv prefix behind the idle-priority tools this system has."""
    prefix: tuple[str, ...] = ()
    if shutil.which("nice"):
        prefix += ("nice", "-n", "19")
    if shutil.which("ionice"):
        prefix += ("ionice", "-c", "3", "-t")
    return (*prefix, *borg)
