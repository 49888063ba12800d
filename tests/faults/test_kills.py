"""SIGKILL at random moments: of the daemon during snapshots and restores, of borg itself."""

import os
import shutil
import signal
import time

from tests.conftest import PASSPHRASE
from tests.faults.conftest import TRIALS, archive_names, configure, raw_borg
from tests.processes import children_of
from tests.calls import wait_for
from backupd.restore.journal import unfinished_journals
from tests.tree import describe


def settled_status(daemon, repository):
    """The overview once the start-up read of the repository has caught up with borg."""
    expected = len(archive_names(daemon, repository))
    with daemon.client() as client:
        return wait_for(lambda: (status := client.call("status"))["snapshot_count"] == expected
                        and status["problem"] is None and status, timeout=60)


def test_the_daemon_killed_during_snapshots_loses_nothing(make_daemon, tmp_path, large_data, rng):
    repository = tmp_path / "repo"
    daemon = make_daemon()
    configure(daemon, repository, [large_data])
    outcomes = []
    for trial in range(TRIALS):
        with daemon.client() as client:
            job = client.call("snapshot")
        wait_for(lambda: children_of(daemon.process.pid), timeout=30)
        time.sleep(rng.uniform(0.0, 0.6))
        daemon.stop(signal.SIGKILL)
        daemon.start()
        with daemon.client() as client:
            recorded = next(j for j in client.call("jobs") if j["id"] == job["id"])
        assert recorded["state"] in ("failed", "succeeded"), recorded
        if recorded["state"] == "failed":
            assert recorded["error"]["code"] == "interrupted"
        outcomes.append((recorded["error"] or {}).get("code") or recorded["state"])
        settled_status(daemon, repository)
        with daemon.client() as client:
            client.set_timeout(300)
            after = client.call("snapshot", {"wait": True})
            assert after["state"] == "succeeded", (trial, after["error"], daemon.log()[-2000:])
        status = settled_status(daemon, repository)
        assert status["last_snapshot"]["name"] == after["result"]["snapshot"]["name"]
    print(f"daemon kills during snapshots: {TRIALS} trials, outcomes {outcomes}")
    assert raw_borg(daemon, "check", str(repository)).returncode == 0
    assert outcomes.count("interrupted") >= TRIALS // 3


def test_the_daemon_killed_during_restores_leaves_every_target_whole(make_daemon, tmp_path, large_data, rng):
    target = tmp_path / "box-data"
    shutil.copytree(large_data, target)
    (target / "small").mkdir()
    for index in range(200):
        (target / "small" / f"note{index}.txt").write_text(f"saved {index}\n")
    daemon = make_daemon()
    configure(daemon, tmp_path / "repo", [target])
    with daemon.client() as client:
        client.set_timeout(300)
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    snapshot_tree = describe(target)
    for trial in range(TRIALS):
        (target / "small" / "note7.txt").write_text(f"changed in trial {trial}\n")
        (target / f"new-in-trial-{trial}").write_text("new")
        before = describe(target)
        with daemon.client() as client:
            client.call("restore", {})
        time.sleep(rng.uniform(0.05, 3.0))
        daemon.stop(signal.SIGKILL)
        daemon.start()
        after = describe(target)
        assert after in (before, snapshot_tree), f"trial {trial}: a mix of old and new"
        assert not list(tmp_path.glob(".backupd-*")) and not list(target.glob(".backupd-*"))
        assert not unfinished_journals(daemon.state_dir)
        if after == before:
            for path in target.glob("new-in-trial-*"):
                path.unlink()


def test_borg_killed_during_a_snapshot_and_a_check_is_a_typed_failure(make_daemon, tmp_path, large_data):
    repository = tmp_path / "repo"
    daemon = make_daemon()
    configure(daemon, repository, [large_data])
    for method in ("snapshot", "check"):
        if method == "check":
            with daemon.client() as client:
                client.set_timeout(300)
                assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        with daemon.client() as client:
            job = client.call(method)
            borg = wait_for(lambda: children_of(daemon.process.pid), timeout=30)
            time.sleep(0.2)
            for pid in borg:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            finished = wait_for(lambda: (j := client.call("jobs", {"limit": 1})[0])["state"] != "running" and j)
            assert finished["id"] == job["id"]
            assert finished["state"] == "failed" and finished["error"]["code"] == "borg_failed", finished
            assert finished["error"]["data"]["exit_code"] in (128 + signal.SIGKILL, -signal.SIGKILL)
            if method == "snapshot":
                assert client.call("status")["problem"]["code"] == "borg_failed"
            client.set_timeout(300)
            assert client.call(method, {"wait": True})["state"] == "succeeded"
            assert client.call("status")["problem"] is None
    assert PASSPHRASE not in daemon.log()


def test_borg_killed_during_a_prune_is_a_typed_failure_and_the_next_prune_succeeds(make_daemon, tmp_path,
                                                                                  sample_data):
    repository = tmp_path / "repo"
    daemon = make_daemon()
    configure(daemon, repository, [sample_data], schedule="hourly", keep={"hourly": 1})
    with daemon.client() as client:
        for _ in range(3):
            assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
            time.sleep(1)
    killed_prune = run_catch_up_and_kill_the_prune(daemon)
    assert killed_prune["state"] == "failed" and killed_prune["error"]["code"] == "borg_failed", killed_prune
    with daemon.client() as client:
        assert client.call("ping")["api"] == 1
    assert raw_borg(daemon, "check", str(repository)).returncode == 0
    daemon.stop()
    age_last_attempt(daemon)
    daemon.start()
    with daemon.client() as client:
        prune = wait_for(lambda: next((j for j in client.call("jobs") if j["kind"] == "prune"
                                       and j["id"] != killed_prune["id"] and j["state"] != "running"), None),
                         timeout=120)
        assert prune["state"] == "succeeded", prune
        assert client.call("status")["snapshot_count"] == 1


def age_last_attempt(daemon) -> None:
    """Make the last automatic attempt look hours old, so an automatic snapshot is due at start."""
    import json

    path = daemon.state_dir / "state.json"
    state = json.loads(path.read_text())
    for key in ("last_attempt", "configured_at"):
        if state.get(key):
            state[key] -= 5 * 3600
    state["last_snapshot"]["time"] -= 5 * 3600
    path.write_text(json.dumps(state))


def run_catch_up_and_kill_the_prune(daemon) -> dict:
    daemon.stop()
    age_last_attempt(daemon)
    daemon.start()
    with daemon.client() as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.call("status")["job"]
            borg = children_of(daemon.process.pid)
            if job and job["kind"] == "prune" and borg:
                for pid in borg:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return wait_for(lambda: (j := next(x for x in client.call("jobs") if x["id"] == job["id"]))
                                ["state"] != "running" and j)
            time.sleep(0.005)
    raise AssertionError("no prune job ran")
