"""The installed units under a real systemd, booted as PID 1 in systemd-nspawn.

One container per module: booted once, `make install` run inside it as the README says, then
driven from outside with nsenter, as an operator with a shell on the box would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE
from tests.nspawn import CannotBoot, Container, unusable_reason

WORKTREE = Path(__file__).resolve().parent.parent
WHEELS = "/var/cache/backupd-wheels"
SETTINGS = "/etc/backupd/backupd.toml"
STATE_DIR = "/var/lib/backupd"
REPOSITORY = "/srv/backups/repo"

if (reason := unusable_reason()) is not None:
    pytest.skip(reason, allow_module_level=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """A booted Debian with backupd installed by `make install`, pip reaching only local wheels."""
    container = Container(tmp_path_factory.mktemp("nspawn"))
    try:
        container.prepare()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir",
                        str(container.root / WHEELS.lstrip("/")), str(WORKTREE), "setuptools", "pip"],
                       check=True, capture_output=True)
        try:
            container.boot()
        except CannotBoot as error:
            pytest.skip(f"systemd-nspawn cannot boot a container here: {error}")
        container.run(["make", "-C", str(WORKTREE), "install"], timeout=300,
                      env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS})
        yield container
    finally:
        container.shut_down()


def systemctl_show(box: Container, unit: str, *properties: str) -> dict[str, str]:
    output = box.run(["systemctl", "show", unit, *(f"--property={name}" for name in properties)]).stdout
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def backupctl(box: Container, *args: str, check: bool = True, user: str | None = None,
              timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return box.run(["backupctl", *args], check=check, user=user, timeout=timeout)


def call(box: Container, method: str, params: dict | None = None) -> dict:
    """One call through the installed client library, as another Edgebox service makes it."""
    script = ("import json, sys\nfrom backupctl.client import Client\n"
              "with Client(timeout=120) as client:\n"
              "    print(json.dumps(client.call(sys.argv[1], json.loads(sys.argv[2]))))\n")
    result = box.run(["/opt/backupd/bin/python", "-c", script, method, json.dumps(params or {})])
    return json.loads(result.stdout)


def journal(box: Container, unit: str = "backupd.service", since_boot: bool = True) -> list[dict]:
    args = ["journalctl", "--unit", unit, "--output=json", "--no-pager"] + (["--boot"] if since_boot else [])
    return [json.loads(line) for line in box.run(args).stdout.splitlines() if line.strip()]


def test_install_enables_the_socket_and_the_service_and_makes_both_groups(box):
    for unit in ("backupd.socket", "backupd.service"):
        assert box.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled"
    assert box.run(["systemctl", "is-active", "backupd.service"]).stdout.strip() == "active"
    for group in ("backupd", "backupd-admin"):
        box.run(["getent", "group", group])


def test_the_socket_starts_the_service_on_first_use(box):
    box.run(["systemctl", "stop", "backupd.service"])
    assert box.run(["systemctl", "is-active", "backupd.service"], check=False).stdout.strip() == "inactive"
    assert box.run(["systemctl", "is-active", "backupd.socket"]).stdout.strip() == "active"
    assert json.loads(backupctl(box, "--json", "ping").stdout)["api"] == 1
    assert box.run(["systemctl", "is-active", "backupd.service"]).stdout.strip() == "active"


def test_active_only_after_ready_and_status_shown(box):
    box.run(["systemctl", "restart", "backupd.service"])
    shown = systemctl_show(box, "backupd.service", "Type", "ActiveEnterTimestampMonotonic",
                           "ExecMainStartTimestampMonotonic", "StatusText")
    assert shown["Type"] == "notify"
    listening = [entry for entry in journal(box) if "listening on" in entry.get("MESSAGE", "")]
    ready_at = int(listening[-1]["__MONOTONIC_TIMESTAMP"])
    assert int(shown["ExecMainStartTimestampMonotonic"]) < ready_at <= int(shown["ActiveEnterTimestampMonotonic"])
    assert shown["StatusText"] in ("not configured",) or shown["StatusText"].startswith("idle")


def test_exposure_rated_by_the_live_manager(box):
    output = box.run(["systemd-analyze", "security", "--no-pager", "backupd.service"]).stdout
    rating = float(output.strip().splitlines()[-1].split("level for backupd.service:")[1].split()[0])
    assert rating <= 2.6, output[-400:]
