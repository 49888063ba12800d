"""Automatic snapshots end to end: a real daemon, real borg, the real wall clock."""

import json
import time

from tests.conftest import PASSPHRASE
from tests.test_daemon import wait_for


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
                                  "sources": [str(sample_data)], "schedule": "hourly"})
        client.call("snapshot", {"wait": True})
        status = client.call("status")
    assert status["automatic"] is True and status["schedule"] == "hourly"
    assert status["next_run"] > time.time()
    daemon.stop()
    age_state(daemon, hours=5)
    daemon.start()
    with daemon.client() as client:
        job = wait_for(lambda: next((j for j in client.call("jobs") if j["trigger"] == "schedule"), None))
        wait_for(lambda: client.call("jobs", {"limit": 1})[0]["state"] != "running")
        time.sleep(1)
        jobs = client.call("jobs")
        status = client.call("status")
    assert [j["trigger"] for j in jobs if j["kind"] == "snapshot"] == ["schedule", "manual"]
    assert jobs[0]["id"] == job["id"] and jobs[0]["state"] == "succeeded"
    assert status["snapshot_count"] == 2 and status["problem"] is None
    assert time.time() < status["next_run"] <= time.time() + 3600
    daemon.restart()
    time.sleep(2)
    with daemon.client() as client:
        assert [j["trigger"] for j in client.call("jobs") if j["kind"] == "snapshot"] == ["schedule", "manual"]
