"""Shared fixtures: a real backupd process on a real Unix socket, sample data, borg helpers."""

from __future__ import annotations

import itertools
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backupctl.client import Client
from tests.s3 import S3Server, start_s3_server

PASSPHRASE = "correct horse battery staple"
START_TIMEOUT = 20.0


@dataclass
class DaemonProcess:
    """A backupd subprocess; restartable on the same state folder and socket."""

    socket: Path
    state_dir: Path
    settings: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    open_file_limit: tuple[int, int] | None = None  # soft, hard

    def start(self) -> None:
        env = dict(os.environ, **self.extra_env)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backupd", "--config", str(self.settings),
             "--socket", str(self.socket), "--state-dir", str(self.state_dir)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, preexec_fn=self._limit_open_files,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"backupd exited with {self.process.returncode}:\n{self.log()}")
            try:
                with Client(str(self.socket), timeout=2.0) as client:
                    client.call("ping")
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"backupd did not answer within {START_TIMEOUT} s:\n{self.log()}")

    def _limit_open_files(self) -> None:
        if self.open_file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.open_file_limit)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, timeout: float = 60.0) -> Client:
        return Client(str(self.socket), timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def sample_data(tmp_path: Path) -> Path:
    """A small tree of files that a snapshot can take in about a second."""
    root = tmp_path / "data"
    for folder in range(5):
        sub = root / f"folder{folder}"
        sub.mkdir(parents=True)
        for index in range(20):
            (sub / f"file{index}.txt").write_bytes(os.urandom(4096) + f"{folder}/{index}".encode())
    (root / "empty").mkdir()
    os.symlink("folder0/file0.txt", root / "link")
    return root


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A running backupd with its own socket, state folder and settings; stopped afterwards."""
    settings = tmp_path / "backupd.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "borg-base"}"\nhostname = "testbox"\njitter = 0\n'
                        '[defaults]\nschedule = "manual"\n')
    process = DaemonProcess(
        socket=tmp_path / "run" / "backupd.sock",
        state_dir=tmp_path / "state",
        settings=settings,
        log_path=tmp_path / "backupd.log",
    )
    process.start()
    yield process
    if process.process is not None:
        process.stop()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """Where a test repository goes; it does not exist yet."""
    return tmp_path / "repo"


@pytest.fixture
def configured_daemon(daemon: DaemonProcess, repository: Path, sample_data: Path) -> DaemonProcess:
    """A running backupd configured with a new repository over sample_data."""
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)]})
    return daemon


@pytest.fixture(scope="session")
def large_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 200 MB of incompressible files: a snapshot of it takes a few seconds."""
    root = tmp_path_factory.mktemp("large") / "data"
    root.mkdir()
    for index in range(40):
        (root / f"blob{index:02d}.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    os.sync()
    return root


_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.new_bucket(f"edgebox-{os.getpid()}-{next(_bucket_numbers)}")


@pytest.fixture
def new_box(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A second backupd, as on a newly installed box: its own state folder and socket."""
    folder = tmp_path / "newbox"
    folder.mkdir()
    settings = folder / "backupd.toml"
    settings.write_text(f'borg_base_dir = "{folder / "borg-base"}"\nhostname = "newbox"\njitter = 0\n'
                        '[defaults]\nschedule = "manual"\n')
    process = DaemonProcess(socket=folder / "run" / "backupd.sock", state_dir=folder / "state",
                            settings=settings, log_path=folder / "backupd.log")
    process.start()
    yield process
    if process.process is not None:
        process.stop()
