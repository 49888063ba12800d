"""The installed units under a real systemd, booted as PID 1 in systemd-nspawn.

One container per module: booted once, `make install` run inside it as the README says, then
driven from outside with nsenter, as an operator with a shell on the box would.
"""

from __future__ import annotations

import json
import os
import shutil
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
SOURCE = "/usr/src/backupd"
JOURNAL_READ_DELAY_US = 100_000
SETTINGS = "/etc/backupd/backupd.toml"
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
        # A copy at a fixed place: the worktree may lie under /tmp, which the booted system hides.
        shutil.copytree(WORKTREE, container.root / SOURCE.lstrip("/"), symlinks=True,
                        ignore=shutil.ignore_patterns(".git", ".venv", ".run", "__pycache__", ".pytest_cache",
                                                      ".hypothesis", "*.egg-info"))
        container.run(["make", "-C", SOURCE, "install"], timeout=300,
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


def restart(box: Container) -> None:
    """A restart, however many the tests did before within systemd's start limit."""
    box.run(["systemctl", "reset-failed", "backupd.service"], check=False)
    box.run(["systemctl", "restart", "backupd.service"], timeout=60)


def journal(box: Container, unit: str = "backupd.service", since_boot: bool = True) -> list[dict]:
    args = ["journalctl", "--unit", unit, "--output=json", "--no-pager"] + (["--boot"] if since_boot else [])
    return [json.loads(line) for line in box.run(args).stdout.splitlines() if line.strip()]


def test_install_enables_the_socket_and_the_service_and_makes_both_groups(box):
    for unit in ("backupd.socket", "backupd.service"):
        assert box.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled"
    assert box.run(["systemctl", "is-active", "backupd.service"]).stdout.strip() == "active"
    for group in ("backupd", "backupd-admin"):
        box.run(["getent", "group", group])


def test_the_installed_groups_let_a_service_user_read_or_administer(box):
    for user, groups in (("webui", "backupd,backupd-admin"), ("monitor", "backupd"), ("stranger", "")):
        box.run(["useradd", "--system", user])
        if groups:
            box.run(["usermod", "-aG", groups, user])
    assert json.loads(backupctl(box, "--json", "config", user="webui").stdout)["schedule"] == "hourly"
    assert json.loads(backupctl(box, "--json", "status", user="monitor").stdout)["state"] == "unconfigured"
    refused = backupctl(box, "snapshot", user="monitor", check=False)
    assert refused.returncode == 1 and "forbidden" in refused.stderr
    admitted = backupctl(box, "snapshot", user="webui", check=False)
    assert admitted.returncode == 1 and "not_configured" in admitted.stderr
    locked_out = backupctl(box, "status", user="stranger", check=False)
    assert locked_out.returncode == 3 and "Permission denied" in locked_out.stderr


def test_the_socket_starts_the_service_on_first_use(box):
    box.run(["systemctl", "stop", "backupd.service"])
    assert box.run(["systemctl", "is-active", "backupd.service"], check=False).stdout.strip() == "inactive"
    assert box.run(["systemctl", "is-active", "backupd.socket"]).stdout.strip() == "active"
    assert json.loads(backupctl(box, "--json", "ping").stdout)["api"] == 1
    assert box.run(["systemctl", "is-active", "backupd.service"]).stdout.strip() == "active"


def test_active_only_after_ready_and_status_shown(box):
    restart(box)
    shown = systemctl_show(box, "backupd.service", "Type", "ActiveEnterTimestampMonotonic",
                           "ExecMainStartTimestampMonotonic", "StatusText")
    assert shown["Type"] == "notify"
    listening = [entry for entry in journal(box) if "listening on" in entry.get("MESSAGE", "")]
    # journald stamps a line when it reads it from the daemon's stderr, which may be a moment
    # after systemd took the READY=1 the daemon sent right after writing it.
    logged_at = int(listening[-1]["__MONOTONIC_TIMESTAMP"])
    assert int(shown["ExecMainStartTimestampMonotonic"]) < logged_at
    assert logged_at <= int(shown["ActiveEnterTimestampMonotonic"]) + JOURNAL_READ_DELAY_US
    assert shown["StatusText"] in ("not configured",) or shown["StatusText"].startswith("idle")


def test_exposure_rated_by_the_live_manager(box):
    output = box.run(["systemd-analyze", "security", "--no-pager", "backupd.service"]).stdout
    rating = float(output.strip().splitlines()[-1].split("level for backupd.service:")[1].split()[0])
    assert rating <= 2.5, output[-400:]


SMALL_SOURCES = {
    "/etc/edgebox": "settings of the box\n",
    "/home/alice/documents": "alice's letter\n",
    "/srv/app": "served\n",
    "/var/lib/app": "database\n",
    "/opt/app": "installed by hand\n",
    "/root/notes": "root's notes\n",
}
BIG_SOURCE = "/srv/big"


def configure(box: Container, sources: list[str], schedule: str = "manual") -> dict:
    return call(box, "configure", {"repository": REPOSITORY, "passphrase": PASSPHRASE, "sources": sources,
                                   "schedule": schedule})


def write_sources(box: Container) -> None:
    box.run(["useradd", "--create-home", "alice"], check=False)
    box.run(["mkdir", "-p", os.path.dirname(REPOSITORY)])
    for folder, text in SMALL_SOURCES.items():
        box.write(f"{folder}/file", text)
        box.write(f"{folder}/sub/deeper", text.upper())
    box.run(["chown", "-R", "alice:alice", "/home/alice/documents"])


def read_sources(box: Container) -> dict[str, tuple[str, str]]:
    return {folder: (box.run(["cat", f"{folder}/file"], check=False).stdout,
                     box.run(["cat", f"{folder}/sub/deeper"], check=False).stdout) for folder in SMALL_SOURCES}


def test_restores_into_every_kind_of_folder_the_unit_allows(box):
    write_sources(box)
    box.run(["mknod", "/srv/app/null0", "c", "1", "3"])
    configure(box, list(SMALL_SOURCES))
    assert call(box, "snapshot", {"wait": True})["state"] == "succeeded"
    before = read_sources(box)
    for folder in SMALL_SOURCES:
        box.write(f"{folder}/file", "changed\n")
        box.run(["rm", "-r", f"{folder}/sub"])
    job = call(box, "restore", {"wait": True})
    assert job["state"] == "succeeded", job
    assert read_sources(box) == before
    # PrivateDevices=yes leaves the daemon no CAP_MKNOD: the device node is said to be missing.
    assert (job["result"]["not_restored"], job["result"]["not_restored_paths"]) == (1, ["/srv/app/null0"])
    assert call(box, "status")["problem"]["code"] == "restore_partial"
    assert box.run(["test", "-e", "/srv/app/null0"], check=False).returncode != 0
    assert box.run(["stat", "-c", "%U", "/home/alice/documents/sub/deeper"]).stdout.strip() == "alice"
    # Every later restore still works: nothing was left half done.
    assert call(box, "restore", {"wait": True, "paths": ["/etc/edgebox"]})["state"] == "succeeded"


def test_configure_refuses_a_source_the_unit_keeps_read_only(box):
    box.write("/usr/local/share/app/file", "x\n")
    refused = box.run(["/opt/backupd/bin/python", "-c", (
        "import json\nfrom backupctl.client import Client, RpcError\n"
        "try:\n    Client().call('configure', {'repository': '%s', 'passphrase': '%s', "
        "'sources': ['/usr/local/share/app']})\n"
        "except RpcError as error:\n    print(json.dumps([error.code, error.data, error.message]))\n"
    ) % (REPOSITORY, PASSPHRASE)]).stdout
    code, data, message = json.loads(refused)
    assert (code, data) == ("invalid_params", {"param": "sources"})
    assert "/usr/local/share/app" in message and "read-only" in message


def test_journal_priorities_come_from_the_prefixes(box):
    restart(box)
    entries = journal(box)
    listening = [entry for entry in entries if "listening on" in entry.get("MESSAGE", "")]
    assert listening and listening[-1]["PRIORITY"] == "6"
    assert not any(str(entry.get("MESSAGE", "")).startswith("<") for entry in entries)


def test_broken_settings_at_start_leave_the_daemon_up_and_saying_why(box):
    good = box.run(["cat", SETTINGS]).stdout
    restarts = int(systemctl_show(box, "backupd.service", "NRestarts")["NRestarts"])
    broken = good + "\nthis line is broken\n"
    box.write(SETTINGS, broken)
    try:
        restart(box)
        shown = systemctl_show(box, "backupd.service", "ActiveState", "StatusText", "NRestarts")
        assert shown["ActiveState"] == "active" and shown["StatusText"].startswith("settings unreadable")
        started = time.monotonic()
        status = json.loads(backupctl(box, "--json", "status", timeout=30).stdout)
        assert time.monotonic() - started < 10
        line = broken.splitlines().index("this line is broken") + 1
        assert (status["problem"]["code"], status["problem"]["line"]) == ("config_unreadable", line)
        refused = backupctl(box, "snapshot", check=False, timeout=30)
        assert refused.returncode == 1 and "config_unreadable" in refused.stderr
        errors = [entry for entry in journal(box) if "serving with no work done" in entry.get("MESSAGE", "")]
        assert errors and errors[-1]["PRIORITY"] == "3"
    finally:
        box.write(SETTINGS, good)
    box.run(["systemctl", "reload", "backupd.service"])
    assert json.loads(backupctl(box, "--json", "status").stdout)["problem"] is None
    assert int(systemctl_show(box, "backupd.service", "NRestarts")["NRestarts"]) == restarts


def big_snapshot_running(box: Container) -> subprocess.Popen[str]:
    """`backupctl snapshot` of a few hundred megabytes, once borg is at work."""
    box.run(["sh", "-c", f"mkdir -p {BIG_SOURCE} && for i in $(seq 1 12); do "
                         f"head -c 25M /dev/urandom > {BIG_SOURCE}/blob$i; done"])
    configure(box, [BIG_SOURCE, *SMALL_SOURCES])
    client = box.start(["backupctl", "snapshot"])
    wait_for("borg create running", lambda: box.run(["pgrep", "-f", "borg.* create"], check=False).returncode == 0,
             timeout=30, interval=0.05)
    return client


def test_reload_during_a_snapshot_keeps_the_connection_and_the_job(box):
    main_pid = systemctl_show(box, "backupd.service", "MainPID")["MainPID"]
    client = big_snapshot_running(box)
    box.run(["systemctl", "reload", "backupd.service"])
    assert client.poll() is None, "the snapshot ended before the reload: too little data"
    out, err = client.communicate(timeout=300)
    assert client.returncode == 0, out + err
    assert systemctl_show(box, "backupd.service", "MainPID")["MainPID"] == main_pid
    assert call(box, "jobs", {"limit": 1})[0]["state"] == "succeeded"


def test_stop_during_a_snapshot_leaves_no_lock_and_the_next_snapshot_works(box):
    client = big_snapshot_running(box)
    box.run(["systemctl", "stop", "backupd.service"], timeout=150)
    client.communicate(timeout=60)
    assert box.run(["pgrep", "-f", "borg.* create"], check=False).returncode != 0
    locks = box.run(["sh", "-c", f"ls -d {REPOSITORY}/lock.* 2>/dev/null || true"]).stdout
    assert locks == ""
    assert call(box, "snapshot", {"wait": True})["state"] == "succeeded"


def test_the_watchdog_restarts_a_stopped_daemon(box):
    dropin = "/etc/systemd/system/backupd.service.d/watchdog.conf"
    box.write(dropin, "[Service]\nWatchdogSec=2\nRestartSec=1\n")
    try:
        box.run(["systemctl", "daemon-reload"])
        restart(box)
        before = systemctl_show(box, "backupd.service", "MainPID", "NRestarts")
        box.run(["kill", "-STOP", before["MainPID"]])
        wait_for("a restart by the watchdog", lambda: systemctl_show(box, "backupd.service", "NRestarts")["NRestarts"]
                 != before["NRestarts"], timeout=30)
        wait_for("active again", lambda: box.run(["systemctl", "is-active", "backupd.service"],
                                                 check=False).stdout.strip() == "active", timeout=30)
        assert systemctl_show(box, "backupd.service", "MainPID")["MainPID"] != before["MainPID"]
        assert any("Watchdog timeout" in entry.get("MESSAGE", "") for entry in journal(box, unit="init.scope")
                   + [entry for entry in journal(box, unit="backupd.service")])
    finally:
        box.run(["rm", "-r", "/etc/systemd/system/backupd.service.d"])
        box.run(["systemctl", "daemon-reload"])


def scheduled_snapshots(box: Container) -> list[dict]:
    jobs = call(box, "jobs", {"limit": 50})
    return [job for job in jobs if job["kind"] == "snapshot" and job["trigger"] == "schedule"]


def test_after_a_reboot_a_due_schedule_runs_without_any_client(box):
    settings = box.run(["cat", SETTINGS]).stdout
    box.write(SETTINGS, "jitter = 0\n" + settings)
    box.run(["systemctl", "reload", "backupd.service"])
    configure(box, list(SMALL_SOURCES), schedule="* * * * *")
    box.run(["systemctl", "stop", "backupd.service"])
    box.reboot()
    assert box.run(["systemctl", "is-active", "backupd.service"]).stdout.strip() == "active"
    wait_for("a scheduled snapshot that succeeded", lambda: any(
        job["state"] == "succeeded" for job in scheduled_snapshots(box)), timeout=150, interval=2)
