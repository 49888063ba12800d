"""The recovery note of export_key, followed word for word on a machine that never saw the box."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, DaemonProcess
from tests.tree import describe


def borg(*args: str, base: Path, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BORG_PASSPHRASE": PASSPHRASE, "BORG_BASE_DIR": str(base),
           "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    return subprocess.run([sys.executable, "-m", "borg", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, check=check, timeout=120)


def commands_in(note: str, snapshot: str) -> list[list[str]]:
    """The commands the note tells a person to type, in order (its indented `borg` lines),
    with the snapshot the person chose."""
    return [shlex.split(line.replace("<snapshot name>", snapshot))
            for line in note.splitlines() if re.match(r"\s{8}borg ", line)]


@pytest.mark.parametrize("mode", ["repokey", "keyfile"])
def test_the_note_names_the_real_mode_and_its_steps_get_the_data_back(
    daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path, mode: str
) -> None:
    # Made by hand with the daemon's own borg folder, as a box set up long ago would have it.
    borg("init", f"--encryption={mode}", str(repository), base=tmp_path / "borg-base")
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)]})
        name = client.call("snapshot", {"wait": True})["result"]["snapshot"]["name"]
        exported = client.call("export_key")
    note = exported["note"]
    assert exported["encryption"] == mode
    assert f"Encryption:  {mode}\n" in note
    assert "passphrase above" not in note and PASSPHRASE not in note

    elsewhere = tmp_path / "another-machine"
    elsewhere.mkdir()
    fresh_borg = elsewhere / "borg-base"
    if mode == "keyfile":
        assert "keeps its key outside" in note
        missing = borg("list", str(repository), base=fresh_borg, check=False)
        assert missing.returncode != 0, "without the key, a keyfile repository cannot be read"
    (elsewhere / "key.txt").write_text(note[note.index("\nBORG_KEY ") + 1:])
    typed = commands_in(note, name)
    for argv in typed:
        borg(*argv[1:], base=fresh_borg, cwd=elsewhere)
    assert [argv[1] for argv in typed] == ["key", "list", "extract"]
    restored = elsewhere / str(sample_data).lstrip("/")
    assert describe(restored) == describe(sample_data)
