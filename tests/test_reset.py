"""reset in this process: the box forgets its configuration and secrets; the repository and
its archives stay, and configuring again finds them."""

from __future__ import annotations

import json
from pathlib import Path

from backupd.borg import commands
from tests.conftest import PASSPHRASE
from tests.in_process import call, configure, make_service, running


async def test_reset_unconfigures_and_keeps_the_repository_and_its_archives(
    tmp_path: Path, repository: Path, sample_data: Path
) -> None:
    service = make_service(tmp_path)
    async with running(service):
        await configure(service, repository, [sample_data])
        snapshot = await call(service, "snapshot", {"wait": True})
        config = service.require_config()
        assert await call(service, "reset") == {}
        status = await call(service, "status")
        shown = await call(service, "config")
        listing = await service.borg.run(commands.list_archives(str(repository)), config=config)
        again = await configure(service, repository, [sample_data])
    assert status["state"] == "unconfigured" and status["snapshot_count"] == 0 and status["repository"] is None
    assert shown["repository"] is None
    assert [archive["name"] for archive in listing.json["archives"]] == [snapshot["result"]["snapshot"]["name"]]
    assert again == {"created": False, "snapshot_count": 1}


async def test_reset_erases_the_passphrase_and_borgs_local_cache(
    tmp_path: Path, repository: Path, sample_data: Path
) -> None:
    service = make_service(tmp_path)
    async with running(service):
        await configure(service, repository, [sample_data])
        await call(service, "snapshot", {"wait": True})
        assert (tmp_path / "borg-base" / ".cache" / "borg").is_dir()
        await call(service, "reset")
        job = (await call(service, "jobs", {"limit": 1}))[0]
    saved = "".join(path.read_text() for path in (tmp_path / "state").iterdir() if path.is_file())
    assert PASSPHRASE not in saved + json.dumps(job)
    assert job["kind"] == "reset" and job["state"] == "succeeded"
    assert not (tmp_path / "borg-base" / ".cache" / "borg").exists()
    assert (repository / "config").is_file()
