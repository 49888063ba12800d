"""`python -m bench.mirror [--megabytes N] [--pairs N]`: what the off-site mirror costs after an
unchanged snapshot, beside the snapshot itself: time (RPC call to job finished) and bytes and
requests uploaded, against a real S3 server (moto) on 127.0.0.1 through rclone.

Each pair is an unchanged snapshot, then a mirror of it; medians are printed as Markdown."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.dataset import write_dataset
from bench.options import DEFAULT_SEED, MB, DatasetSize
from bench.stats import median, timed
from bench.workspace import temporary_workspace
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.s3 import S3Server, start_s3_server

SETTLE_SECONDS = 2.0  # the daemon's own mirror after each snapshot starts a second after it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mirror", description=__doc__)
    parser.add_argument("--megabytes", type=int, default=50, help="size of the data set (default 50)")
    parser.add_argument("--pairs", type=int, default=5, help="unchanged snapshot + mirror pairs (default 5)")
    options = parser.parse_args(argv)
    with temporary_workspace() as workspace:
        dataset_size = DatasetSize(total_bytes=options.megabytes * MB, file_count=max(options.megabytes * 10, 10))
        write_dataset(workspace.data, dataset_size, DEFAULT_SEED)
        folder = workspace.daemon_folder
        folder.mkdir(parents=True, exist_ok=True)
        server = start_s3_server(folder)
        settings = folder / "backupd.toml"
        settings.write_text(f'borg_base_dir = "{folder / "borg-base"}"\nhostname = "benchbox"\njitter = 0\n'
                            '[defaults]\nschedule = "manual"\n')
        daemon = DaemonProcess(socket=folder / "backupd.sock", state_dir=folder / "state", settings=settings,
                               log_path=folder / "backupd.log")
        try:
            daemon.start()
            print(render(measure(daemon, server, workspace.repository("mirrored"), workspace.data, options.pairs),
                         options.megabytes))
        finally:
            if daemon.process is not None:
                daemon.stop()
            server.stop()
    return 0


def call(daemon: DaemonProcess, method: str, params: dict[str, Any] | None = None) -> Any:
    with daemon.client(timeout=600) as client:
        return client.call(method, params)


def succeeded(daemon: DaemonProcess, job: dict[str, Any]) -> dict[str, Any]:
    if job["state"] != "succeeded":
        raise RuntimeError(f"{job['kind']} job {job['id']} {job['state']}: {job['error']}")
    return job


def measure(daemon: DaemonProcess, server: S3Server, repository: Path, data: Path, pairs: int) -> dict[str, list[float]]:
    bucket = server.new_bucket("bench-mirror")
    call(daemon, "configure", {"repository": str(repository), "passphrase": PASSPHRASE, "sources": [str(data)]})
    call(daemon, "configure_mirror", server.mirror_options(bucket))
    succeeded(daemon, call(daemon, "snapshot", {"wait": True}))
    wait_until_idle(daemon)
    figures: dict[str, list[float]] = {"snapshot": [], "mirror": [], "uploaded_bytes": [], "requests": []}
    for _ in range(pairs):
        time.sleep(1.0)  # snapshot names are to the second
        snapshot_seconds, _ = timed(lambda: succeeded(daemon, call(daemon, "snapshot", {"wait": True})))
        requests_before = len(server.requests())
        mirror_seconds, job = timed(lambda: succeeded(daemon, call(daemon, "mirror", {"wait": True})))
        figures["snapshot"].append(snapshot_seconds)
        figures["mirror"].append(mirror_seconds)
        figures["uploaded_bytes"].append(job["result"]["uploaded_bytes"])
        figures["requests"].append(len(server.requests()) - requests_before)
        wait_until_idle(daemon)
    return figures


def wait_until_idle(daemon: DaemonProcess) -> None:
    while True:
        time.sleep(SETTLE_SECONDS)
        if call(daemon, "status")["job"] is None:
            return


def render(figures: dict[str, list[float]], megabytes: int) -> str:
    snapshot, mirror = median(figures["snapshot"]), median(figures["mirror"])
    return "\n".join([
        f"Unchanged snapshot of {megabytes} MB, then its mirror ({len(figures['snapshot'])} pairs, medians):",
        "",
        "| what | median |",
        "|---|---|",
        f"| unchanged snapshot, call to finished | {snapshot:.2f} s |",
        f"| mirror after it, call to finished | {mirror:.2f} s ({mirror / snapshot:.2f} x the snapshot) |",
        f"| bytes uploaded by the mirror | {median(figures['uploaded_bytes']):,.0f} |",
        f"| HTTP requests to the S3 server | {median(figures['requests']):.0f} |",
    ])


if __name__ == "__main__":
    sys.exit(main())
