"""`make run`: the daemon in the foreground on a local demo set-up, configured and ready.

Everything lives under .run/: sample data, the repository, the daemon's state and socket.
On first start the repository is created; later starts connect to it again.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from backupctl.client import Client, DaemonUnreachable

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
SETTINGS = ROOT / "examples" / "backupd.toml"
SOCKET = RUN / "backupd.sock"
DATA = RUN / "data"
REPOSITORY = RUN / "repo"
PASSPHRASE_FILE = RUN / "passphrase"
START_TIMEOUT = 30.0


def make_sample_data() -> None:
    """About 60 MB in 1,000 files: documents, photos-sized blobs and an app folder."""
    if DATA.exists():
        return
    for index in range(900):
        folder = DATA / "documents" / f"year-{2015 + index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        text = f"Note {index}\n" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n" * (20 + index % 50)
        (folder / f"note-{index:04d}.txt").write_text(text)
    photos = DATA / "photos"
    photos.mkdir(parents=True)
    for index in range(100):
        (photos / f"IMG_{index:04d}.jpg").write_bytes(os.urandom(500_000 + index * 1_000))
    (DATA / "apps" / "nextcloud").mkdir(parents=True)
    (DATA / "apps" / "nextcloud" / "config.php").write_text("<?php $CONFIG = array();\n")


def passphrase() -> str:
    if not PASSPHRASE_FILE.exists():
        fd = os.open(PASSPHRASE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_urlsafe(24).encode())
        os.close(fd)
    return PASSPHRASE_FILE.read_text().strip()


def wait_until_answering(daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"backupd exited with status {daemon.returncode}")
        try:
            with Client(SOCKET, timeout=2.0) as client:
                client.call("ping")
            return
        except (DaemonUnreachable, OSError):
            time.sleep(0.1)
    sys.exit(f"backupd did not answer on {SOCKET} within {START_TIMEOUT:.0f} s")


def configure_once() -> None:
    with Client(SOCKET, timeout=120.0) as client:
        if client.call("status")["state"] != "unconfigured":
            return
        result = client.call(
            "configure",
            {"repository": str(REPOSITORY), "passphrase": passphrase(), "sources": [str(DATA)]},
        )
    verb = "created" if result["created"] else "connected to"
    print(f"demo: {verb} repository {REPOSITORY} ({result['snapshot_count']} snapshots)", flush=True)


def main() -> None:
    RUN.mkdir(exist_ok=True)
    os.chmod(RUN, 0o700)
    make_sample_data()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "backupd", "--config", str(SETTINGS)], stdin=subprocess.DEVNULL
    )
    signal.signal(signal.SIGTERM, lambda *_: daemon.terminate())
    try:
        wait_until_answering(daemon)
        configure_once()
        print(
            f"demo: backupd is ready. In another shell:\n"
            f"  {ROOT / '.venv/bin/backupctl'} --socket {SOCKET.relative_to(ROOT)} snapshot\n"
            f"  {ROOT / '.venv/bin/backupctl'} --socket {SOCKET.relative_to(ROOT)} status\n"
            "Stop with Ctrl-C.",
            flush=True,
        )
        sys.exit(daemon.wait())
    except KeyboardInterrupt:
        daemon.send_signal(signal.SIGINT)
        sys.exit(daemon.wait())
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait()


if __name__ == "__main__":
    main()
