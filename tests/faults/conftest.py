"""Fault injection against real daemons and real borg. `BACKUPD_FAULT_TRIALS` and
`BACKUPD_LOAD_SECONDS` turn the bounded runs of `make test` into long ones."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, DaemonProcess


TRIALS = int(os.environ.get("BACKUPD_FAULT_TRIALS", "4"))
LOAD_SECONDS = float(os.environ.get("BACKUPD_LOAD_SECONDS", "12"))


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("BACKUPD_FAULT_SEED", random.randrange(1 << 30)))
    print(f"fault seed {seed}")
    return random.Random(seed)


@pytest.fixture
def make_daemon(tmp_path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start a daemon with extra settings lines; every daemon started is stopped at the end."""
    started: list[DaemonProcess] = []

    def start(settings_lines: str = "", name: str = "box", state_dir: Path | None = None) -> DaemonProcess:
        settings = tmp_path / f"{name}.toml"
        settings.write_text(f'borg_base_dir = "{tmp_path / (name + "-borg")}"\nhostname = "{name}"\njitter = 0\n'
                            f"{settings_lines}\n" + ('[defaults]\nschedule = "manual"\n' if "[defaults]" not in
                                                     settings_lines else ""))
        daemon = DaemonProcess(socket=tmp_path / f"{name}.sock", state_dir=state_dir or tmp_path / f"{name}-state",
                               settings=settings, log_path=tmp_path / f"{name}.log")
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process is not None:
            daemon.stop(timeout=60)


def borg_env(daemon: DaemonProcess) -> dict[str, str]:
    return {**os.environ, "BORG_PASSPHRASE": PASSPHRASE, "BORG_BASE_DIR": str(daemon.settings.parent / "raw-borg"),
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}


def raw_borg(daemon: DaemonProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """borg run by hand against the daemon's repository, as an administrator would."""
    return subprocess.run([sys.executable, "-m", "borg", *args], env=borg_env(daemon),
                          capture_output=True, text=True, check=check, timeout=300)


def hold_lock(daemon: DaemonProcess, repository: Path, seconds: int) -> subprocess.Popen[bytes]:
    """Another borg process holding the repository's lock, as a person's `borg with-lock` would."""
    holder = subprocess.Popen([sys.executable, "-m", "borg", "with-lock", str(repository), "sleep", str(seconds)],
                              env=borg_env(daemon), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(repository.glob("lock.exclusive/*")):
        assert holder.poll() is None and time.monotonic() < deadline, "borg with-lock did not take the lock"
        time.sleep(0.05)
    return holder


def archive_names(daemon: DaemonProcess, repository: Path) -> list[str]:
    return raw_borg(daemon, "list", "--short", str(repository)).stdout.split()


def configure(daemon: DaemonProcess, repository: Path, sources: list[Path], **extra) -> dict:
    with daemon.client() as client:
        return client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                         "sources": [str(source) for source in sources], **extra})
