"""Reset and restore end to end: a real daemon, real borg, real files."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, DaemonProcess
from tests.calls import call_error, wait_for
from backupd.restore.journal import JOURNAL_FOLDER, unfinished_journals
from tests.tree import describe


@pytest.fixture
def rich_data(tmp_path) -> Path:
    """Files with owners, modes, mtimes, symlinks, hard links, empty folders and xattrs."""
    root = tmp_path / "box" / "data"
    (root / "photos" / "2024").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "apps" / "nextcloud").mkdir(parents=True)
    for index in range(30):
        (root / "photos" / "2024" / f"img{index}.jpg").write_bytes(os.urandom(20_000))
    config = root / "apps" / "nextcloud" / "config.php"
    config.write_text("<?php $CONFIG = array('secret' => 'x');\n")
    os.chmod(config, 0o640)
    os.chown(config, 33, 33)
    os.utime(config, (1_600_000_000, 1_600_000_000))
    os.symlink("../photos/2024/img0.jpg", root / "apps" / "cover.jpg")
    os.link(root / "photos" / "2024" / "img1.jpg", root / "apps" / "hardlink.jpg")
    os.setxattr(root / "photos" / "2024" / "img2.jpg", "user.comment", b"sunset")
    os.chmod(root / "photos", 0o750)
    return root


@pytest.fixture
def restorable(daemon, repository, rich_data):
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(rich_data)]})
    return daemon


def snapshot(daemon) -> str:
    with daemon.client() as client:
        job = client.call("snapshot", {"wait": True})
    assert job["state"] == "succeeded"
    return job["result"]["snapshot"]["name"]


def restore(daemon, **params) -> dict:
    """Restore and wait, including for the clean-up that runs after the job has answered."""
    with daemon.client() as client:
        job = client.call("restore", {**params, "wait": True})
    wait_for(lambda: not (daemon.state_dir / JOURNAL_FOLDER / f"{job['id']}.json").exists())
    return job


def change_everything(root: Path) -> None:
    (root / "photos" / "2024" / "img3.jpg").write_bytes(b"overwritten")
    (root / "photos" / "2024" / "img4.jpg").unlink()
    (root / "photos" / "new-since-snapshot.jpg").write_bytes(b"new")
    shutil.rmtree(root / "empty")
    os.chmod(root / "apps" / "nextcloud" / "config.php", 0o666)
    (root / "apps" / "cover.jpg").unlink()


def leftovers(root: Path) -> list[str]:
    """The restore's own folders beside or under the target; one the daemon deletes meanwhile is not an error."""
    found = []
    for folder, subfolders, files in os.walk(root.parent):
        found += [os.path.join(folder, name) for name in subfolders + files if name.startswith(".backupd-")]
        subfolders[:] = [name for name in subfolders if not name.startswith(".backupd-")]
    return found


def cleaned_up(daemon, root: Path) -> bool:
    """The previous content is deleted after the restore has answered: wait for it."""
    wait_for(lambda: not leftovers(root) and not unfinished_journals(daemon.state_dir))
    return True


def test_restore_of_the_latest_snapshot_puts_back_exactly_what_was_saved(restorable, rich_data):
    saved = describe(rich_data)
    snapshot(restorable)
    change_everything(rich_data)
    job = restore(restorable)
    assert job["state"] == "succeeded", job["error"]
    assert describe(rich_data) == saved
    assert job["result"]["targets"] == [str(rich_data)] and job["progress"]["percent"] == 100.0
    assert cleaned_up(restorable, rich_data)
    with restorable.client() as client:
        assert client.call("status")["state"] == "idle"


def test_restore_of_an_older_snapshot(restorable, rich_data):
    first = describe(rich_data)
    older = snapshot(restorable)
    change_everything(rich_data)
    time.sleep(1)
    snapshot(restorable)
    job = restore(restorable, snapshot=older)
    assert job["state"] == "succeeded" and job["result"]["snapshot"] == older
    assert describe(rich_data) == first


def test_restore_of_one_folder_and_of_one_file(restorable, rich_data):
    saved = describe(rich_data)
    snapshot(restorable)
    change_everything(rich_data)
    photos = rich_data / "photos"
    job = restore(restorable, paths=[str(photos)])
    assert job["state"] == "succeeded"
    now = describe(rich_data)

    def photos_without_link_groups(tree):
        # img1.jpg was hard-linked to a file outside the restored folder; that link cannot survive.
        return {k: v[:6] + v[7:] for k, v in tree.items() if k.startswith("photos")}

    assert photos_without_link_groups(now) == photos_without_link_groups(saved)
    assert not (rich_data / "apps" / "cover.jpg").exists()
    config = rich_data / "apps" / "nextcloud" / "config.php"
    assert restore(restorable, paths=[str(config)])["state"] == "succeeded"
    assert describe(rich_data)["apps/nextcloud/config.php"] == saved["apps/nextcloud/config.php"]
    assert cleaned_up(restorable, rich_data)


def test_dry_run_reports_and_changes_nothing(restorable, rich_data):
    snapshot(restorable)
    change_everything(rich_data)
    before = describe(rich_data)
    job = restore(restorable, dry_run=True)
    result = job["result"]
    assert job["state"] == "succeeded" and result["dry_run"] is True
    assert describe(rich_data) == before and leftovers(rich_data) == []
    assert str(rich_data / "photos" / "2024" / "img4.jpg") in result["written"]["paths"]
    assert str(rich_data / "photos" / "2024" / "img3.jpg") in result["replaced"]["paths"]
    assert str(rich_data / "empty") in result["written"]["paths"]
    assert result["removed"]["paths"] == [str(rich_data / "photos" / "new-since-snapshot.jpg")]
    assert result["bytes"] >= 40_000


def test_bad_restore_requests(restorable, rich_data, tmp_path):
    with restorable.client() as client:
        assert call_error(client, "restore").code == "not_found"
        snapshot(restorable)
        assert call_error(client, "restore", {"snapshot": "nope"}).code == "not_found"
        error = call_error(client, "restore", {"paths": ["relative/path"]})
        assert error.code == "invalid_params" and error.data["param"] == "paths"
        assert call_error(client, "restore", {"paths": [str(rich_data) + "/../x"]}).code == "invalid_params"
        job = client.call("restore", {"paths": [str(tmp_path / "elsewhere")], "wait": True})
        assert job["state"] == "failed" and job["error"]["code"] == "invalid_params"


def test_a_failing_before_hook_changes_nothing_and_the_after_hook_still_runs(tmp_path, repository, rich_data):
    marker = tmp_path / "after-ran"
    settings = tmp_path / "hooks.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "base"}"\n[defaults]\nschedule = "manual"\n'
                        f'[hooks]\nbefore_restore = ["false"]\nafter_restore = "echo $BACKUPD_JOB_STATE > {marker}"\n')
    daemon = DaemonProcess(socket=tmp_path / "h.sock", state_dir=tmp_path / "h-state", settings=settings,
                           log_path=tmp_path / "h.log")
    daemon.start()
    try:
        with daemon.client() as client:
            client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                      "sources": [str(rich_data)]})
        snapshot(daemon)
        change_everything(rich_data)
        before = describe(rich_data)
        job = restore(daemon)
    finally:
        daemon.stop()
    assert job["state"] == "failed" and job["error"]["code"] == "hook_failed"
    assert describe(rich_data) == before and leftovers(rich_data) == []
    assert marker.read_text() == "failed\n"


def snapshot_of_a_copy(daemon, repository: Path, data: Path, target: Path) -> None:
    """A copy of data at target, configured as the only source, with one snapshot of it."""
    shutil.copytree(data, target)
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(target)]})
    snapshot(daemon)


def test_restore_progress_counts_bytes_written_against_the_snapshot(daemon, repository, large_data, tmp_path):
    target = tmp_path / "progress-target"
    snapshot_of_a_copy(daemon, repository, large_data, target)
    with daemon.client() as client:
        size = client.call("status")["last_snapshot"]["original_size"]
        job = client.call("restore", {})
        seen = wait_for(lambda: (client.call("status")["job"] or {}).get("progress", {}).get("original_size") and
                        client.call("status")["job"]["progress"])
        done = wait_for(lambda: client.call("job", {"id": job["id"]})["state"] != "running" and
                        client.call("job", {"id": job["id"]}), timeout=120)
    assert 0 < seen["original_size"] <= seen["total_size"] == size and 0 <= seen["percent"] <= 100
    assert seen["files"] <= seen["total_files"] == 40
    assert done["state"] == "succeeded" and done["progress"]["percent"] == 100.0
    assert size <= done["result"]["bytes"] < size * 1.01 and done["result"]["files"] == 40
    cleaned_up(daemon, target)


def test_a_restore_killed_during_extract_leaves_the_old_data_whole(daemon, repository, large_data, tmp_path):
    target = tmp_path / "restore-target"
    snapshot_of_a_copy(daemon, repository, large_data, target)
    (target / "blob00.bin").write_bytes(b"changed after the snapshot")
    before = describe(target)
    with daemon.client() as client:
        client.call("restore", {})
        wait_for(lambda: (client.call("status")["job"] or {}).get("progress", {}).get("original_size"))
    daemon.stop(signal.SIGKILL)
    assert unfinished_journals(daemon.state_dir)
    daemon.start()
    with daemon.client() as client:
        jobs = client.call("jobs", {"limit": 1})
    assert describe(target) == before and leftovers(target) == []
    assert jobs[0]["kind"] == "restore" and jobs[0]["state"] == "failed"
    assert jobs[0]["error"]["code"] == "interrupted"
    assert not unfinished_journals(daemon.state_dir)


def test_reset_keeps_the_remote_archives_and_forgets_the_secrets(restorable, repository, rich_data):
    snapshot(restorable)
    time.sleep(1)
    snapshot(restorable)
    with restorable.client() as client:
        assert client.call("reset") == {}
        status = client.call("status")
        config = client.call("config")
        jobs = client.call("jobs")
        assert call_error(client, "snapshot").code == "not_configured"
    assert status["state"] == "unconfigured" and status["automatic"] is False and status["snapshot_count"] == 0
    assert config["repository"] is None and jobs[0]["kind"] == "reset" and len(jobs) == 4
    for path in restorable.state_dir.rglob("*"):
        if path.is_file():
            assert PASSPHRASE.encode() not in path.read_bytes(), path
    borg_base = restorable.settings.parent / "borg-base"
    assert not (borg_base / ".cache" / "borg").exists()
    listing = subprocess.run([sys.executable, "-m", "borg", "list", "--short", str(repository)],
                             env={**os.environ, "BORG_PASSPHRASE": PASSPHRASE, "BORG_BASE_DIR": str(borg_base),
                                  "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"},
                             capture_output=True, text=True, check=True)
    assert len(listing.stdout.split()) == 2
    with restorable.client() as client:
        again = client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                          "sources": [str(rich_data)]})
        assert again == {"created": False, "snapshot_count": 2}
        assert len(client.call("snapshots")) == 2


def test_connecting_with_only_location_and_passphrase_is_enough_to_restore(restorable, repository, rich_data):
    snapshot(restorable)
    saved = describe(rich_data)
    with restorable.client() as client:
        client.call("reset")
    shutil.rmtree(rich_data)
    with restorable.client() as client:
        connected = client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                              "schedule": "daily"})
        assert connected == {"created": False, "snapshot_count": 1}
        status = client.call("status")
        assert status["state"] == "idle" and status["automatic"] is False and status["next_run"] is None
        refused = call_error(client, "snapshot")
        assert refused.code == "not_configured" and refused.data["param"] == "sources"
        assert "no sources" in refused.message
    assert restore(restorable)["state"] == "succeeded"
    assert describe(rich_data) == saved


def test_reset_is_refused_while_a_job_runs(daemon, repository, large_data):
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(large_data)]})
        job = client.call("snapshot")
        error = call_error(client, "reset")
        assert error.code == "busy" and error.data["job"]["id"] == job["id"]
        client.call("cancel", {"job": job["id"]})


def test_export_key_gives_the_key_and_a_recovery_note(restorable, repository):
    with restorable.client() as client:
        exported = client.call("export_key")
    assert exported["key"].startswith("BORG_KEY ")
    assert str(repository) in exported["note"] and exported["key"] in exported["note"]
    assert PASSPHRASE not in exported["note"]


def test_a_sparse_file_comes_back_sparse(restorable, rich_data):
    image = rich_data / "apps" / "disk.img"
    with open(image, "wb") as file:
        file.truncate(64 * 2**20)
        file.seek(10 * 2**20)
        file.write(os.urandom(2 * 2**20))
    allocated = image.stat().st_blocks * 512
    assert allocated < 4 * 2**20, "this file system keeps holes"
    content = hashlib.sha256(image.read_bytes()).hexdigest()
    snapshot(restorable)
    image.unlink()
    assert restore(restorable, paths=[str(image)])["state"] == "succeeded"
    assert hashlib.sha256(image.read_bytes()).hexdigest() == content
    assert image.stat().st_size == 64 * 2**20
    # Holes come back where borg stored all-zero chunks; the zeros that share a chunk (about
    # 2 MiB) with data are written. Without holes the file would take its whole 64 MiB.
    assert image.stat().st_blocks * 512 <= allocated + 16 * 2**20


def test_a_snapshot_whose_sources_overlap_restores_whole(restorable, rich_data, repository):
    """configure refuses overlapping sources; a snapshot made that way by hand still restores."""
    apps = rich_data / "apps"
    saved = describe(apps)
    env = {**os.environ, "BORG_PASSPHRASE": PASSPHRASE, "BORG_BASE_DIR": str(rich_data.parent / "raw-borg")}
    subprocess.run([sys.executable, "-m", "borg", "create", f"{repository}::by-hand", str(apps),
                    str(apps / "nextcloud"), str(apps)], env=env, check=True, capture_output=True)
    restorable.restart()
    with restorable.client() as client:
        wait_for(lambda: "by-hand" in [entry["name"] for entry in client.call("snapshots")])
    change_everything(rich_data)
    job = restore(restorable, snapshot="by-hand")
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["targets"] == [str(apps)]
    # hardlink.jpg shared its inode with a photo outside the snapshot: that link cannot come back.
    assert {path: entry[:6] + entry[7:] for path, entry in describe(apps).items()} == {
        path: entry[:6] + entry[7:] for path, entry in saved.items()}


def test_a_path_the_snapshot_lacks_is_not_found_in_the_dry_run_and_the_restore(restorable, rich_data):
    name = snapshot(restorable)
    change_everything(rich_data)
    newer = rich_data / "photos" / "new-since-snapshot.jpg"
    before = describe(rich_data)
    for dry_run in (True, False):
        job = restore(restorable, paths=[str(newer)], dry_run=dry_run)
        assert job["state"] == "failed"
        assert job["error"]["code"] == "not_found", job["error"]
        assert job["error"]["data"] == {"param": "paths", "missing": [str(newer)]}
        assert job["error"]["message"] == f"Snapshot {name} does not hold {newer}; it holds {rich_data}"
    assert describe(rich_data) == before and leftovers(rich_data) == []


def test_a_restore_that_cannot_be_undone_blocks_only_its_targets_until_it_is_recovered(restorable, rich_data):
    snapshot(restorable)
    other = rich_data.parent / "other-app"
    aside = rich_data.parent / ".backupd-previous-77"
    (aside / "other-app").mkdir(parents=True)
    (aside / "other-app" / "settings").write_text("the previous content")
    other.mkdir()
    (other / "in-the-way").write_text("made after the crash")
    journals = restorable.state_dir / "restores"
    journals.mkdir(mode=0o700)
    (journals / "77.json").write_text(json.dumps({
        "version": 1, "job_id": "77", "phase": "swapping", "created_folders": [],
        "targets": [{"path": str(other), "method": "rename", "staging": str(rich_data.parent / ".backupd-restore-77"),
                     "aside": str(aside), "step": "moving_aside", "old_metadata": None, "new_metadata": None}]}))
    restorable.restart()
    with restorable.client() as client:
        problem = client.call("status")["problem"]
    assert problem["code"] == "restore_incomplete" and str(other) in problem["message"]

    change_everything(rich_data)
    job = restore(restorable, paths=[str(rich_data / "photos")])
    assert job["state"] == "succeeded", job["error"]

    (other / "in-the-way").unlink()
    other.rmdir()
    restorable.restart()
    with restorable.client() as client:
        assert client.call("status")["problem"] is None
    assert (other / "settings").read_text() == "the previous content"
    assert not aside.exists() and not unfinished_journals(restorable.state_dir)


def test_a_restore_that_cannot_fit_fails_before_writing_anything(daemon, repository, tmp_path):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        target = disk / "photos"
        target.mkdir()
        for index in range(5):
            (target / f"img{index}.jpg").write_bytes(os.urandom(1024 * 1024))
        with daemon.client() as client:
            client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                      "sources": [str(target)]})
        snapshot(daemon)
        before = describe(target)
        plan = restore(daemon, dry_run=True)["result"]
        [room] = plan["space"]
        assert room["mount_point"] == str(disk) and room["needed"] == plan["bytes"] == 5 * 1024 * 1024
        assert 2 * 1024 * 1024 < room["free"] < room["needed"]
        job = restore(daemon)
        assert job["state"] == "failed" and job["error"]["code"] == "disk_full"
        assert job["error"]["data"] == {"mount_point": str(disk), "needed": room["needed"], "free": room["free"]}
        assert "nothing was restored" in job["error"]["message"]
        assert describe(target) == before and leftovers(target) == []
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_archives_made_by_hand_are_restored_from_what_they_hold(restorable, rich_data, repository):
    """An exclude given as two words is no source; a relative source goes back where borg ran."""
    photos, apps = rich_data / "photos", rich_data / "apps"
    saved = describe(rich_data)
    saved_img5 = (photos / "2024" / "img5.jpg").read_bytes()
    env = {**os.environ, "BORG_PASSPHRASE": PASSPHRASE, "BORG_BASE_DIR": str(rich_data.parent / "raw-borg")}
    borg = [sys.executable, "-m", "borg", "create"]
    subprocess.run([*borg, "--exclude", str(photos / "2024" / "img5.jpg"), f"{repository}::absolute", str(photos)],
                   env=env, check=True, capture_output=True)
    subprocess.run([*borg, f"{repository}::relative", "apps"], env=env, check=True, capture_output=True,
                   cwd=rich_data)
    restorable.restart()
    with restorable.client() as client:
        wait_for(lambda: {"absolute", "relative"} <= {entry["name"] for entry in client.call("snapshots")})
    change_everything(rich_data)

    plan = restore(restorable, snapshot="absolute", dry_run=True)
    assert plan["state"] == "succeeded", plan["error"]
    assert plan["result"]["targets"] == [str(photos)]
    assert restore(restorable, snapshot="absolute")["state"] == "succeeded"
    assert (photos / "2024" / "img5.jpg").read_bytes() == saved_img5, "excluded from that snapshot: kept"
    job = restore(restorable, snapshot="relative")
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["targets"] == [str(apps)]
    restored = describe(rich_data)
    assert {path: entry[:6] + entry[7:] for path, entry in restored.items() if path.startswith("apps")} == {
        path: entry[:6] + entry[7:] for path, entry in saved.items() if path.startswith("apps")}
    assert not (rich_data.parent / "apps").exists() and not Path("/apps").exists()


def test_a_whole_restore_keeps_what_the_snapshot_excluded_unless_asked_to_remove_it(
    daemon, repository, rich_data
):
    media = rich_data / "photos" / "holiday.big"
    cache = rich_data / "apps" / "cache"
    later = rich_data / "new-folder" / "film.big"
    media.write_bytes(b"a large film")
    (cache / "thumbs").mkdir(parents=True)
    (cache / "thumbs" / "t1").write_bytes(b"thumbnail")
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(rich_data)], "exclude": ["*.big", f"pp:{cache}"]})
    snapshot(daemon)
    later.parent.mkdir()
    later.write_bytes(b"made after the snapshot")
    (rich_data / "photos" / "new-since-snapshot.jpg").write_bytes(b"new")

    plan = restore(daemon, dry_run=True)["result"]
    assert sorted(plan["kept"]["paths"]) == sorted(map(str, [media, cache, later]))
    assert str(rich_data / "photos" / "new-since-snapshot.jpg") in plan["removed"]["paths"]
    assert not any(str(path) in plan["removed"]["paths"] for path in (media, cache, cache / "thumbs", later))
    job = restore(daemon)
    assert job["state"] == "succeeded", job["error"]
    assert media.read_bytes() == b"a large film" and (cache / "thumbs" / "t1").read_bytes() == b"thumbnail"
    assert later.read_bytes() == b"made after the snapshot"
    assert not (rich_data / "photos" / "new-since-snapshot.jpg").exists()

    plan = restore(daemon, dry_run=True, remove_excluded=True)["result"]
    assert plan["kept"]["count"] == 0 and str(media) in plan["removed"]["paths"]
    assert restore(daemon, remove_excluded=True)["state"] == "succeeded"
    assert not media.exists() and not cache.exists() and not later.parent.exists()
