"""SSH for remote repositories: the daemon's own key, its own known_hosts, and the ssh
command line borg uses (BORG_RSH). The user's ~/.ssh is never read."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from backupctl.protocol import ErrorCode, RpcError
from backupd import capabilities
from backupd.private_files import open_trusted_folder

SSH_FOLDER = "ssh"
KEY_NAME = "id_ed25519"
NEW_KEY_PREFIX = ".new-key."
_MAKING_KEY = threading.Lock()
# ssh reads the key and talks to the network; the daemon's capabilities are no use to it.
WITHOUT_CAPABILITIES = capabilities.WRAPPER
# A user or host never starts with "-" (ssh would read it as an option) and a user holds no
# ":" (no password in a location: the daemon signs in with its own key).
_USER = r"(?P<user>[A-Za-z0-9_.][A-Za-z0-9_.-]*)"
_HOST = r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.-]*)"
_SSH_URL = re.compile(rf"^ssh://(?:{_USER}@)?{_HOST}(?::(?P<port>\d{{1,5}}))?(?P<path>/\S.*)$")
_SCP_STYLE = re.compile(rf"^{_USER}@{_HOST}:(?P<path>(?!//)\S.*)$")


@dataclass(frozen=True)
class RemoteLocation:
    user: str | None
    host: str
    port: int
    path: str

    @property
    def known_hosts_name(self) -> str:
        """How ssh names this server in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def remote_location(location: str) -> RemoteLocation | None:
    """The server of an ssh:// or user@host:path location; None for a local path."""
    if location.startswith("/"):
        return None
    match = (_SSH_URL if location.startswith("ssh://") else _SCP_STYLE).match(location)
    if match is None:
        return None
    port = match.groupdict().get("port")
    return RemoteLocation(match["user"], match["host"].strip("[]"), int(port) if port else 22, match["path"])


@dataclass(frozen=True)
class SshIdentity:
    folder: Path

    @property
    def private_key(self) -> Path:
        return self.folder / KEY_NAME

    @property
    def public_key(self) -> Path:
        return self.folder / f"{KEY_NAME}.pub"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    def ensure(self, comment: str) -> None:
        """Create the key pair on first use: ed25519, no passphrase, readable only by the daemon.
        ssh-keygen writes it into a new private folder; the private key is moved into place last."""
        with _MAKING_KEY:
            if self.private_key.exists():
                return
            self.folder.mkdir(mode=0o700, exist_ok=True)
            folder_fd = open_trusted_folder(self.folder)
            try:
                for unfinished in self.folder.glob(f"{NEW_KEY_PREFIX}*"):
                    shutil.rmtree(unfinished)
                with tempfile.TemporaryDirectory(prefix=NEW_KEY_PREFIX, dir=self.folder) as fresh:
                    subprocess.run(
                        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", f"{fresh}/{KEY_NAME}"],
                        check=True, stdin=subprocess.DEVNULL, capture_output=True,
                    )
                    for name in (self.public_key.name, self.private_key.name):
                        os.rename(f"{fresh}/{name}", name, dst_dir_fd=folder_fd)
                os.fsync(folder_fd)
            finally:
                os.close(folder_fd)

    def borg_rsh(self, timeout: int) -> str:
        """The ssh command borg runs: with no capabilities, only this key, only this known_hosts,
        no prompts, a link that stops answering for `timeout` seconds is closed."""
        interval = max(timeout // 3, 1)
        options = [
            "-F", "/dev/null",
            "-i", str(self.private_key),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={timeout}",
            "-o", f"ServerAliveInterval={interval}",
            "-o", "ServerAliveCountMax=3",
        ]
        return shlex.join([*WITHOUT_CAPABILITIES, "ssh", *options])

    def fingerprint_of(self, server: RemoteLocation) -> str | None:
        """The recorded host key's SHA256 fingerprint, once the server has been seen."""
        if not self.known_hosts.exists():
            return None
        found = subprocess.run(
            ["ssh-keygen", "-l", "-F", server.known_hosts_name, "-f", str(self.known_hosts)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        return _first_fingerprint(found.stdout)

    def pin(self, server: RemoteLocation, fingerprint: str, timeout: int) -> None:
        """Record the server's host key only if it has the fingerprint the user gave."""
        scanned = _scan(server, timeout)
        for line in scanned.splitlines():
            listed = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=line, capture_output=True, text=True)
            if _first_fingerprint(listed.stdout) == fingerprint:
                self.folder.mkdir(mode=0o700, exist_ok=True)
                self._forget(server)
                self._record_host_key(line.strip() + "\n")
                return
        if not scanned.strip():
            raise RpcError(ErrorCode.REPOSITORY_UNREACHABLE, f"Cannot reach {server.host} port {server.port} over SSH")
        raise RpcError(
            ErrorCode.HOST_KEY_CHANGED,
            f"The SSH host key of {server.host} does not have the fingerprint {fingerprint}: nothing was sent",
        )

    def _record_host_key(self, line: str) -> None:
        folder_fd = open_trusted_folder(self.folder)
        try:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            with open(os.open(self.known_hosts.name, flags, 0o600, dir_fd=folder_fd), "a", encoding="utf-8") as known:
                known.write(line)
        finally:
            os.close(folder_fd)

    def _forget(self, server: RemoteLocation) -> None:
        if self.known_hosts.exists():
            subprocess.run(["ssh-keygen", "-R", server.known_hosts_name, "-f", str(self.known_hosts)],
                           capture_output=True, stdin=subprocess.DEVNULL)


def _scan(server: RemoteLocation, timeout: int) -> str:
    """The server's host keys as known_hosts lines, or nothing when it cannot be reached."""
    scanned = subprocess.run(
        ["ssh-keyscan", "-T", str(timeout), "-p", str(server.port), server.host],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    return scanned.stdout


def _first_fingerprint(listing: str) -> str | None:
    for line in listing.splitlines():
        for word in line.split():
            if word.startswith("SHA256:"):
                return word
    return None


def authorized_keys_line(public_key: str, repository_path: str | None) -> str:
    """An authorized_keys entry that lets this key only append to its own repository."""
    path = repository_path or "/path/to/this/box/repository"
    command = f"borg serve --restrict-to-repository {shlex.quote(path)} --append-only"
    return f'command="{command}",restrict {public_key.strip()}'
