import os

import pytest

from backupd.borg.environment import borg_environment, passphrase_pipe


def test_environment_for_borg() -> None:
    base = {
        "PATH": "/usr/bin",
        "BORG_BASE_DIR": "/var/lib/backupd",
        "BORG_PASSPHRASE": "a",
        "BORG_PASSCOMMAND": "cat /x",
        "BORG_NEW_PASSPHRASE": "b",
        "BORG_PASSPHRASE_FD": "9",
        "LISTEN_PID": "1",
        "LISTEN_FDS": "1",
        "LISTEN_FDNAMES": "backupd.socket",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "1000",
        "WATCHDOG_PID": "1",
        "BORG_EXIT_CODES": "legacy",
    }
    assert borg_environment({"BORG_RSH": "ssh -i key"}, base=base) == {
        "PATH": "/usr/bin",
        "BORG_BASE_DIR": "/var/lib/backupd",
        "BORG_EXIT_CODES": "modern",
        "BORG_DISPLAY_PASSPHRASE": "no",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
        "BORG_HOSTNAME_IS_UNIQUE": "yes",
        "BORG_RSH": "ssh -i key",
    }
    assert borg_environment({"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}, base={})[
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"
    ] == "yes"


@pytest.mark.parametrize("name", ["BORG_PASSPHRASE", "BORG_PASSCOMMAND", "BORG_NEW_PASSPHRASE", "BORG_PASSPHRASE_FD"])
def test_environment_overrides_cannot_carry_a_passphrase(name: str) -> None:
    with pytest.raises(ValueError):
        borg_environment({name: "x"}, base={})


def test_the_passphrase_pipe_holds_the_whole_passphrase_and_nothing_else_open() -> None:
    before = set(os.listdir("/proc/self/fd"))
    read_fd = passphrase_pipe("correct horse ✓")
    try:
        assert os.read(read_fd, 1024) == "correct horse ✓".encode() and os.read(read_fd, 1024) == b""
    finally:
        os.close(read_fd)
    with pytest.raises(ValueError, match="longer than a pipe"):
        passphrase_pipe("x" * (16 * 1024 * 1024))
    assert set(os.listdir("/proc/self/fd")) == before
