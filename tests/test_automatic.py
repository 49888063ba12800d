"""Automatic snapshots end to end: a real daemon, real borg, the real wall clock."""

import json
import time

from tests.conftest import PASSPHRASE
from tests.faults.conftest import hold_lock
from tests.calls import wait_for


def age_state(daemon, hours: float) -> None:
    """Make the persisted last snapshot and attempt look `hours` old, as after downtime."""
    path = daemon.state_dir / "state.json"
    state = json.loads(path.read_text())
    shift = hours * 3600
    state["last_snapshot"]["time"] -= shift
    state["configured_at"] -= shift
    if state.get("last_attempt"):
        state["last_attempt"] -= shift
    path.write_text(json.dumps(state))


def test_a_run_missed_while_down_runs_once_after_start_and_not_again_after_restart(daemon, repository, sample_data):
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)], "schedule": "hourly", "keep": {"hourly": 1}})
        client.call("snapshot", {"wait": True})
        status = client.call("status")
    assert status["automatic"] is True and status["schedule"] == "hourly"
    assert status["next_run"] > time.time()
    daemon.stop()
    age_state(daemon, hours=5)
    daemon.start()
    with daemon.client() as client:
        job = wait_for(lambda: next((j for j in client.call("jobs") if j["kind"] == "prune"), None))
        wait_for(lambda: client.call("jobs", {"limit": 1})[0]["state"] != "running")
        time.sleep(1)
        jobs = client.call("jobs")
        status = client.call("status")
        snapshots = client.call("snapshots")
    assert [(j["kind"], j["trigger"], j["state"]) for j in jobs[:3]] == [
        ("prune", "schedule", "succeeded"), ("snapshot", "schedule", "succeeded"), ("snapshot", "manual", "succeeded")]
    assert jobs[0]["id"] == job["id"] and len(jobs[0]["result"]["pruned"]) == 1
    assert status["snapshot_count"] == 1 and len(snapshots) == 1 and status["problem"] is None
    assert snapshots[0]["name"] == jobs[1]["result"]["snapshot"]["name"] == status["last_snapshot"]["name"]
    assert time.time() < status["next_run"] <= time.time() + 3600
    daemon.restart()
    time.sleep(2)
    with daemon.client() as client:
        assert [j["trigger"] for j in client.call("jobs") if j["kind"] == "snapshot"] == ["schedule", "manual"]
        assert client.call("status")["snapshot_count"] == 1


def test_check_on_demand_reports_damage_as_a_problem(configured_daemon, repository):
    with configured_daemon.client() as client:
        client.call("snapshot", {"wait": True})
        healthy = client.call("check", {"wait": True})
        assert healthy["state"] == "succeeded" and healthy["result"]["ok"] is True
        status = client.call("status")
        assert status["last_check"]["ok"] is True and status["problem"] is None
        segment = max((repository / "data").rglob("[0-9]*"), key=lambda path: path.stat().st_size)
        with open(segment, "r+b") as file:
            file.seek(segment.stat().st_size // 2)
            file.write(b"\0" * 64)
        damaged = client.call("check", {"wait": True})
        status = client.call("status")
        assert damaged["result"]["ok"] is False and status["last_check"]["ok"] is False
        assert status["problem"]["code"] == "check_failed" and "damage" in status["problem"]["message"]


def test_a_manual_snapshot_stops_an_automatic_check_which_runs_again_afterwards(configured_daemon, repository):
    daemon = configured_daemon
    with daemon.client() as client:
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    daemon.stop()
    daemon.settings.write_text("lock_wait = 300\n" + daemon.settings.read_text())
    state = json.loads((daemon.state_dir / "state.json").read_text())
    state["configured_at"] -= 40 * 86400
    (daemon.state_dir / "state.json").write_text(json.dumps(state))
    holder = hold_lock(daemon, repository, 300)  # keeps the automatic check waiting, so it is surely running
    try:
        daemon.start()
        with daemon.client() as client:
            check = wait_for(lambda: (client.call("status")["job"] or {}).get("kind") == "check" and
                             client.call("status")["job"])
            assert check["trigger"] == "schedule"
            taken = client.call("snapshot")
            assert taken["kind"] == "snapshot" and taken["state"] == "running"
            stopped = wait_for(lambda: client.call("job", {"id": check["id"]})["state"] != "running" and
                               client.call("job", {"id": check["id"]}))
            assert stopped["state"] == "cancelled" and "gave way to the snapshot" in stopped["error"]["message"]
            assert client.call("status")["job"]["id"] == taken["id"]
    finally:
        holder.terminate()
        holder.wait()
    with daemon.client() as client:
        done = wait_for(lambda: client.call("job", {"id": taken["id"]})["state"] != "running" and
                        client.call("job", {"id": taken["id"]}), timeout=120)
        assert done["state"] == "succeeded", done["error"]
        again = wait_for(lambda: next((j for j in client.call("jobs") if j["kind"] == "check" and
                                       int(j["id"]) > int(taken["id"]) and j["state"] != "running"), None),
                         timeout=120)
        assert again["trigger"] == "schedule" and again["state"] == "succeeded", again["error"]
        status = client.call("status")
    assert status["snapshot_count"] == 2 and status["last_check"]["ok"] is True and status["problem"] is None
