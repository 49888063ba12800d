"""Job logs: borg's warnings and errors and the daemon's own lines, bounded and redacted; the `job` method."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from backupctl.protocol import RpcError
from backupd.events import EventHub
from backupd.jobs import LOG_LIMIT, LOG_LINE_LIMIT, Job, JobLogHandler, JobRunner, job_log
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.calls import call_error

LOG_KEYS = {"time", "level", "message"}
logger = logging.getLogger("backupd.test_job_log")


@pytest.fixture
def daemon_logging() -> Iterator[None]:
    """The daemon's logging set-up: records of backupd.* at INFO and above also go to job logs."""
    daemon_logger = logging.getLogger("backupd")
    handler, level = JobLogHandler(), daemon_logger.level
    daemon_logger.addHandler(handler)
    daemon_logger.setLevel(logging.INFO)
    yield
    daemon_logger.removeHandler(handler)
    daemon_logger.setLevel(level)


async def saved(job: Job) -> None:
    pass


def redact_hunter2(text: str) -> str:
    return text.replace("hunter2", "[redacted]")


async def test_a_job_keeps_its_own_lines_bounded_and_redacted(daemon_logging: None) -> None:
    runner = JobRunner(EventHub(), [], saved, redact=redact_hunter2)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)

        async def work(job: Job, report: object) -> None:
            logger.info("the passphrase hunter2 is not shown")
            logger.debug("debug lines stay out")
            write = job_log()
            assert write is not None
            for number in range(LOG_LIMIT + 10):
                write("WARNING", f"line {number} " + "x" * LOG_LINE_LIMIT)
            logger.error("the last line")

        job = runner.start("snapshot", "manual", work)
        await runner.wait(job)
        nursery.cancel_scope.cancel()
    assert len(job.log) == LOG_LIMIT
    assert all(len(line.message) <= LOG_LINE_LIMIT for line in job.log)
    assert [line.level for line in job.log[-2:]] == ["error", "info"]
    assert job.log[-2].message == "the last line" and job.log[-1].message.startswith(f"job {job.id} succeeded")
    assert job.log[0].message.startswith("line 12 ")
    assert "log" not in job.to_record()
    full = job.to_full_record()
    assert set(full["log"][0]) == LOG_KEYS
    assert Job.from_record(json.loads(json.dumps(full))) == job
    assert job_log() is None


async def test_the_daemons_own_lines_are_redacted_and_outside_a_job_go_nowhere(daemon_logging: None) -> None:
    runner = JobRunner(EventHub(), [], saved, redact=redact_hunter2)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)

        async def work(job: Job, report: object) -> None:
            logger.warning("connecting with hunter2")

        job = runner.start("check", "manual", work)
        logger.warning("not about the job")
        await runner.wait(job)
        nursery.cancel_scope.cancel()
    assert [(line.level, line.message) for line in job.log] == [
        ("info", f"job {job.id} started: check (manual)"),
        ("warning", "connecting with [redacted]"),
        ("info", f"job {job.id} succeeded: check"),
    ]
    assert "hunter2" not in json.dumps(job.to_full_record())


def test_a_snapshot_lists_what_borg_could_not_read_and_never_shows_the_passphrase(
    daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path
) -> None:
    vanishing = tmp_path / "gone" / PASSPHRASE
    vanishing.mkdir(parents=True)
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data), str(vanishing)]})
        vanishing.rmdir()
        finished = client.call("snapshot", {"wait": True})
        listed = client.call("jobs", {"limit": 1})[0]
        job = client.call("job", {"id": finished["id"]})

    assert finished["state"] == "succeeded"
    result = finished["result"]
    assert result["warning_count"] == 1 and len(result["warnings"]) == 1
    assert "[redacted]" in result["warnings"][0] and "No such file or directory" in result["warnings"][0]
    assert "log" not in finished and "log" not in listed and listed["id"] == finished["id"]
    assert job["result"] == result and job["state"] == "succeeded"
    assert all(set(line) == LOG_KEYS for line in job["log"])
    warnings = [line["message"] for line in job["log"] if line["level"] == "warning"]
    assert warnings == [result["warnings"][0], "borg reported 1 warning (exit code 107): "
                        "what it could not read is not in the snapshot"]
    messages = [line["message"] for line in job["log"]]
    assert messages[0] == f"job {job['id']} started: snapshot (manual)"
    assert messages[-1] == f"job {job['id']} succeeded: snapshot"
    assert PASSPHRASE not in json.dumps(job)
    saved = [path.read_text() for path in daemon.state_dir.glob("jobs.*")]
    assert saved and not any(PASSPHRASE in text for text in saved)


def test_a_failed_job_keeps_borgs_error_and_survives_a_restart(
    configured_daemon: DaemonProcess, repository: Path
) -> None:
    repository.rename(repository.with_name("moved-away"))
    with configured_daemon.client() as client:
        failed = client.call("snapshot", {"wait": True})
    configured_daemon.restart()
    with configured_daemon.client() as client:
        job = client.call("job", {"id": failed["id"]})
    errors = [line["message"] for line in job["log"] if line["level"] == "error"]
    assert any("Repository" in message and "does not exist" in message for message in errors)
    assert errors[-1].startswith(f"job {failed['id']} failed: snapshot: repository_not_found: ")


def test_job_of_an_unknown_id_is_not_found(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        assert call_error(client, "job", {"id": "9999"}).code == "not_found"
        missing = call_error(client, "job", {})
        assert missing.code == "invalid_params" and missing.data["param"] == "id"
        with pytest.raises(RpcError):
            client.call("job", {"id": 7})
