"""export_key in this process: the key borg exports, with a recovery note naming the
repository and the archive names, and never the passphrase. (That backupctl never overwrites
a note it writes is tested in test_cli.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from backupctl.protocol import ErrorCode, RpcError
from backupd.borg import commands
from tests.conftest import PASSPHRASE
from tests.in_process import HOSTNAME, call, configure, make_service, running


async def test_export_key_gives_borgs_key_and_a_note_without_the_passphrase(
    tmp_path: Path, repository: Path, sample_data: Path
) -> None:
    service = make_service(tmp_path)
    async with running(service):
        await configure(service, repository, [sample_data])
        exported = await call(service, "export_key")
        borgs = await service.borg.run(commands.key_export(str(repository)))
    assert exported["repository"] == str(repository) and exported["encryption"] == "repokey-blake2"
    assert exported["key"] == borgs.stdout.strip() and exported["key"].startswith("BORG_KEY ")
    note = exported["note"]
    assert f"Repository:  {repository}" in note and f"named {HOSTNAME}-" in note
    assert note.endswith(exported["key"] + "\n") and "borg key import" in note
    assert PASSPHRASE not in str(exported)


async def test_export_key_before_configure_says_so(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    async with running(service):
        with pytest.raises(RpcError) as refused:
            await call(service, "export_key")
    assert refused.value.code == ErrorCode.NOT_CONFIGURED
