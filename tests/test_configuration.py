"""The configurations' owners over a real state folder: what is saved is what a start reads
back, an automatic schedule only with sources, and the parts hear of each change."""

from __future__ import annotations

from pathlib import Path

from backupd.config import BackupConfig
from backupd.configuration import Configuration, Mirroring
from backupd.events import Change, Changes
from backupd.keeper import Keeper
from backupd.mirror.config import MirrorConfig
from backupd.store import Store

MIRROR = MirrorConfig(provider="s3", bucket="edgebox", prefix="box", access_key_id="id", secret_access_key="key")


def make_keeper(state: Path, changes: Changes) -> Keeper:
    store = Store(state)
    store.open()
    return Keeper(store, lambda: 0.0, changes, lambda: [])


async def test_a_saved_configuration_is_adopted_and_found_at_the_next_start(tmp_path: Path) -> None:
    changes = Changes()
    told: list[Change] = []
    changes.on(Change.CONFIG, lambda _: told.append(Change.CONFIG))
    keeper = make_keeper(tmp_path, changes)
    configuration = Configuration(keeper, changes)
    config = BackupConfig(repository="/srv/repo", passphrase="secret", sources=("/data",), schedule="hourly")

    await configuration.save(config)

    assert configuration.require() == config and told == [Change.CONFIG]
    assert configuration.schedule() is not None and configuration.secrets() == ("secret",)
    assert keeper.load().config == config


async def test_no_automatic_schedule_without_sources_or_when_manual(tmp_path: Path) -> None:
    changes = Changes()
    configuration = Configuration(make_keeper(tmp_path, changes), changes)
    configuration.adopt(BackupConfig(repository="/srv/repo", passphrase="p", sources=(), schedule="hourly"))
    assert configuration.schedule() is None
    configuration.adopt(BackupConfig(repository="/srv/repo", passphrase="p", sources=("/data",), schedule="manual"))
    assert configuration.schedule() is None
    configuration.adopt(None)
    assert configuration.current is None and configuration.secrets() == ()


async def test_the_mirror_is_saved_then_adopted_and_turned_off_with_its_keys(tmp_path: Path) -> None:
    changes = Changes()
    told: list[Change] = []
    changes.on(Change.STATUS, lambda _: told.append(Change.STATUS))
    keeper = make_keeper(tmp_path, changes)
    mirroring = Mirroring(keeper, changes)

    await mirroring.save(MIRROR)
    assert mirroring.current == MIRROR and "key" in mirroring.secrets()
    assert keeper.load().mirror == MIRROR

    await mirroring.save(None)
    assert mirroring.current is None and mirroring.secrets() == ()
    assert keeper.load().mirror is None
    assert told == [Change.STATUS, Change.STATUS]
