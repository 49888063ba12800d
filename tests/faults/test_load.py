"""200 clients polling and subscribing while snapshots run back to back."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.conftest import LOAD_SECONDS, configure
from tests.processes import resident_bytes

PROCESSES = 4
CONNECTIONS_PER_PROCESS = 50
POLL_RATE = 20.0
ROOT = Path(__file__).resolve().parent.parent.parent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)] if ordered else float("nan")


def test_two_hundred_clients_while_snapshots_run_back_to_back(make_daemon, tmp_path, sample_data, large_data):
    daemon = make_daemon("max_connections = 256")
    configure(daemon, tmp_path / "repo", [large_data, sample_data])
    with daemon.client() as client:
        client.set_timeout(300)
        client.call("snapshot", {"wait": True})
    rss_before = resident_bytes(daemon.process.pid)
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.faults.load_worker", str(daemon.socket),
                          str(CONNECTIONS_PER_PROCESS), str(LOAD_SECONDS), str(POLL_RATE)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        for _ in range(PROCESSES)
    ]
    snapshots = []
    deadline = time.monotonic() + LOAD_SECONDS
    with daemon.client() as client:
        client.set_timeout(300)
        while time.monotonic() < deadline:
            (sample_data / "folder0" / "changing.txt").write_text(str(time.time()))
            snapshots.append(client.call("snapshot", {"wait": True})["state"])
    reports = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=LOAD_SECONDS + 120)
        assert worker.returncode == 0, stderr.decode()
        reports.append(json.loads(stdout))
    rss_after = resident_bytes(daemon.process.pid)
    latencies = [latency for report in reports for latency in report["latencies"]]
    errors = [error for report in reports for error in report["errors"]]
    finished = sum(report["notifications"].get("job.finished", 0) for report in reports)
    print(f"load: {LOAD_SECONDS:.0f} s, {len(snapshots)} snapshots, {len(latencies)} status calls, "
          f"p50 {percentile(latencies, 0.5) * 1000:.2f} ms, p99 {percentile(latencies, 0.99) * 1000:.2f} ms, "
          f"{finished} job.finished received, RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB")
    assert errors == []
    assert snapshots and all(state == "succeeded" for state in snapshots)
    # A subscriber may connect after the first snapshot ended and stops at the deadline, before the last.
    assert finished >= (len(snapshots) - 2) * PROCESSES * CONNECTIONS_PER_PROCESS // 2
    assert rss_after - rss_before < 20 * 2**20
