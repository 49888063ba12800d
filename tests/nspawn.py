"""A real systemd booted as PID 1 in systemd-nspawn, over a throw-away overlay of this machine's root.

The container sees this machine's files (the worktree included) through an overlay whose
upper layer is a tmpfs, so nothing it writes reaches the machine. It has no network: pip
installs from wheels built on the machine beforehand. Commands run in it through nsenter.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import children_of

BOOT_TIMEOUT = 90.0
SHUTDOWN_TIMEOUT = 60.0
# What nspawn exits with when the container asked for a reboot.
REBOOT_EXIT_CODE = 133
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CannotBoot(Exception):
    """nspawn refused to run here; the message is its own."""


def unusable_reason() -> str | None:
    """Why a container cannot be tried at all on this machine, or None."""
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn is not installed (Debian package systemd-container)"
    if shutil.which("nsenter") is None:
        return "nsenter is not installed (Debian package util-linux)"
    return None


@dataclass
class Container:
    folder: Path
    nspawn: subprocess.Popen[bytes] | None = None
    init_pid: int | None = None
    boots: int = 0
    mounts: list[Path] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def console_log(self) -> Path:
        return self.folder / "console.log"

    def prepare(self) -> None:
        """The overlay: this machine's root below, a tmpfs above."""
        layers = self.folder / "layers"
        layers.mkdir(parents=True)
        self._mount(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(layers)], layers)
        (layers / "upper").mkdir()
        (layers / "work").mkdir()
        self.root.mkdir()
        options = f"lowerdir=/,upperdir={layers / 'upper'},workdir={layers / 'work'}"
        self._mount(["-t", "overlay", "-o", options, "overlay", str(self.root)], self.root)
        # A machine id of its own, so its journal is its own.
        (self.root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")

    def _mount(self, args: list[str], target: Path) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)
        self.mounts.append(target)

    def boot(self) -> None:
        """Boot and wait until the manager has finished starting up."""
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        with open(self.console_log, "ab") as console:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--quiet", "--directory", str(self.root), "--keep-unit", "--register=no",
                 "--private-network", "--link-journal=no", "--console=pipe", "--boot"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=console, env=env, start_new_session=True,
            )
        self.boots += 1
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.init_pid is None:
            if self.nspawn.poll() is not None:
                raise CannotBoot(self.console_log.read_text(errors="replace").strip()
                                 or f"systemd-nspawn exited with {self.nspawn.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no init in the container after {BOOT_TIMEOUT} s")
            self.init_pid = next((pid for pid in children_of(self.nspawn.pid) if _command(pid) == "systemd"), None)
            time.sleep(0.1)
        state = ""
        while state not in ("running", "degraded"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the container's manager is {state!r} after {BOOT_TIMEOUT} s")
            time.sleep(0.2)
            state = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                             timeout=BOOT_TIMEOUT).stdout.strip()

    def command(self, argv: list[str], env: dict[str, str] | None = None, user: str | None = None) -> list[str]:
        """The command line that runs argv in the container, in every one of its namespaces,
        with a clean environment."""
        assert self.init_pid is not None, "the container is not running"
        variables = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": "/root", **(env or {})}
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        return ["nsenter", f"--target={self.init_pid}", "--all", "env", "-i",
                *(f"{name}={value}" for name, value in variables.items()), *argv]

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """A command left running in the container; its output is read when it ends."""
        return subprocess.Popen(self.command(argv, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, argv: list[str], check: bool = True, timeout: float = 120.0, input: str | None = None,
            env: dict[str, str] | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
        command = self.command(argv, env, user)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                input=input if input is not None else "")
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def write(self, path: str, text: str) -> None:
        self.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "-", path], input=text)

    def reboot(self) -> None:
        """`systemctl reboot` inside; nspawn exits with 133 and the container boots again on the same files."""
        assert self.nspawn is not None
        self.run(["systemctl", "reboot"], check=False)
        code = self.nspawn.wait(timeout=SHUTDOWN_TIMEOUT)
        assert code == REBOOT_EXIT_CODE, f"systemd-nspawn exited with {code} after a reboot"
        self.nspawn = self.init_pid = None
        self.boot()

    def shut_down(self) -> None:
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn asks the manager to power off
            try:
                self.nspawn.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        self.nspawn = self.init_pid = None
        for target in reversed(self.mounts):
            subprocess.run(["umount", "--lazy", str(target)], check=False, capture_output=True)
        self.mounts.clear()


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
