"""backupd as a subprocess: its own settings, socket, state folder and borg base dir."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupctl.client import Client
from backupd.restore.journal import unfinished_journals
from bench.options import COMPRESSION, ENCRYPTION, PASSPHRASE

START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
CALL_TIMEOUT = 600.0
HOSTNAME = "benchbox"
CLEAN_UP_POLL_SECONDS = 0.05


class DaemonFailed(Exception):
    """The daemon did not start, or a job of it did not succeed."""


@dataclass
class BenchDaemon:
    folder: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    last_job_finished: float = 0.0
    # Debug messages in the log, among them every event-loop step over 5 ms.
    verbose: bool = False

    @property
    def socket(self) -> Path:
        return self.folder / "backupd.sock"

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def borg_base_dir(self) -> Path:
        return self.folder / "borg-base"

    @property
    def settings_path(self) -> Path:
        return self.folder / "backupd.toml"

    @property
    def log_path(self) -> Path:
        return self.folder / "backupd.log"

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics" / "backupd.prom"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise DaemonFailed("the daemon is not running")
        return self.process.pid

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.metrics_path.parent.mkdir(exist_ok=True)
        self.settings_path.write_text(
            f'borg_base_dir = "{self.borg_base_dir}"\nhostname = "{HOSTNAME}"\njitter = 0\n'
            f'metrics_file = "{self.metrics_path}"\n[defaults]\nschedule = "manual"\n'
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "backupd", "--config", str(self.settings_path),
                 "--socket", str(self.socket), "--state-dir", str(self.state_dir),
                 *(["--verbose"] if self.verbose else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        self._wait_until_answering()

    def stop(self) -> None:
        """SIGTERM, as systemd would stop it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def client(self) -> Client:
        return Client(self.socket, timeout=CALL_TIMEOUT)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with self.client() as client:
            return client.call(method, params)

    def configure(self, repository: Path, sources: list[Path]) -> None:
        self.call("configure", {
            "repository": str(repository), "passphrase": PASSPHRASE, "sources": [str(path) for path in sources],
            "schedule": "manual", "encryption": ENCRYPTION, "compression": COMPRESSION,
        })

    def snapshot(self) -> dict[str, Any]:
        return self.succeeded(self.call("snapshot", {"wait": True}))

    def restore(self, dry_run: bool = False) -> dict[str, Any]:
        return self.succeeded(self.call("restore", {"wait": True, "dry_run": dry_run}))

    def wait_for_restore_clean_up(self) -> None:
        """A restore's journal stays in the state folder until the replaced content is deleted."""
        deadline = time.monotonic() + CALL_TIMEOUT
        while unfinished_journals(self.state_dir):
            if time.monotonic() > deadline:
                raise DaemonFailed(f"the restore clean-up did not end within {CALL_TIMEOUT:.0f} s")
            time.sleep(CLEAN_UP_POLL_SECONDS)

    def succeeded(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["state"] != "succeeded":
            raise DaemonFailed(f"{job['kind']} job {job['id']} {job['state']}: {job['error']}\n{self.log_tail()}")
        self.last_job_finished = job["finished"]
        return job

    def wait_for_a_new_snapshot_name(self) -> None:
        """Snapshot names hold the time to the second, and the daemon waits a second rather
        than repeat a name: a timed snapshot must start in a later second than the last job."""
        delay = math.floor(self.last_job_finished) + 1 - time.time()
        if delay > 0:
            time.sleep(delay)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_until_answering(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DaemonFailed(f"backupd exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.call("ping")
                return
            except Exception:
                time.sleep(0.05)
        raise DaemonFailed(f"backupd did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")
