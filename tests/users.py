"""Talking to the daemon as another local user, the way an unprivileged service on the box would."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

NOBODY = 65534

_CONNECTOR = """
import socket, sys
control = socket.socket(fileno=int(sys.argv[1]))
while control.recv(1):
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(sys.argv[2])
    socket.send_fds(control, [b"c"], [connection.fileno()])
    connection.close()
"""


def user_switch(uid: int) -> list[str]:
    """The argv prefix that runs a command as uid with no supplementary groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def copy_client_packages() -> Path:
    """The client and msgpack copied where any user can read them, wherever the project lives."""
    import msgpack

    import backupctl

    return copy_packages(backupctl, msgpack)


def copy_packages(*packages: ModuleType) -> Path:
    """Packages copied into a new folder any user can read: the checkout may be in a folder
    other users cannot enter (root's home)."""
    folder = Path(tempfile.mkdtemp(prefix="backupd-client-"))
    for package in packages:
        source = Path(package.__file__).parent
        shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return folder


def call_as_user(packages: Path, uid: int, socket_path: Path, method: str, params: dict | None = None) -> dict:
    """One call from a process running as uid (no groups); returns {'result'} or {'error'}."""
    script = (
        "import json, sys\n"
        "from backupctl.client import Client\n"
        "from backupctl.protocol import RpcError\n"
        f"client = Client({str(socket_path)!r}, timeout=30)\n"
        "try:\n"
        f"    print(json.dumps({{'result': client.call({method!r}, {params!r})}}))\n"
        "except RpcError as error:\n"
        "    print(json.dumps({'error': error.to_wire()}))\n"
    )
    completed = subprocess.run(
        [*user_switch(uid), sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={**os.environ, "PYTHONPATH": str(packages)},
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


class Connector:
    """A process running as another uid that connects to the daemon's socket on request and hands
    each connected socket back, so the daemon sees that uid's credentials on every connection."""

    def __init__(self, uid: int, socket_path: Path) -> None:
        self._control, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [*user_switch(uid), sys.executable, "-I", "-c", _CONNECTOR, str(theirs.fileno()), str(socket_path)],
            pass_fds=[theirs.fileno()], cwd="/",
        )
        theirs.close()
        self._control.settimeout(10.0)

    def connect(self) -> socket.socket:
        self._control.sendall(b"c")
        _, fds, _, _ = socket.recv_fds(self._control, 1, 1)
        if not fds:
            raise ConnectionError("the connector process went away")
        return socket.socket(fileno=fds[0])

    def close(self) -> None:
        self._control.close()
        self._process.wait(timeout=10)

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_as_user(uid: int, code: str, *args: str) -> None:
    """Python code run as uid (no groups), with args as sys.argv[1:]; it must succeed."""
    subprocess.run([*user_switch(uid), sys.executable, "-I", "-c", code, *args],
                   check=True, cwd="/", timeout=60, stdin=subprocess.DEVNULL)


@contextmanager
def folder_others_can_reach() -> Iterator[Path]:
    """A new folder of root's, mode 0755, that other users can look into but not write."""
    folder = Path(tempfile.mkdtemp(prefix="backupd-shared-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)
