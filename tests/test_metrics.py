"""The metrics file: Prometheus text format, read back with a strict parser, written by a real daemon."""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backupd.jobs import Job
from backupd.metrics import collect, render
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.calls import wait_for
from tests.users import NOBODY, folder_others_can_reach, run_as_user

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)\Z")
LABEL = re.compile(r'(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\\n]|\\[\\"n])*)"(?:,|\Z)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    help: str
    kind: str | None = None
    samples: dict[Labels, float] = field(default_factory=dict)


def parse_prometheus(text: str) -> dict[str, Family]:
    """The text exposition format, strictly: HELP then TYPE before a family's samples, every
    sample in a declared family, labels well formed and unique, values numbers, a final newline."""
    assert text.endswith("\n"), "the file must end with a newline"
    families: dict[str, Family] = {}
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP "):].partition(" ")
            assert METRIC_NAME.match(name) and name not in families and help_text, where
            families[name] = Family(help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE "):].partition(" ")
            family = families.get(name)
            assert family is not None and family.kind is None and not family.samples and kind in TYPES, where
            family.kind = kind
        else:
            assert not line.startswith("#") and line.strip(), where
            match = SAMPLE.match(line)
            assert match, where
            family = families.get(match["name"])
            assert family is not None and family.kind is not None, f"{where}: undeclared family"
            labels = _labels(match["labels"] or "", where)
            assert labels not in family.samples, f"{where}: duplicate series"
            value = float(match["value"])
            assert not math.isnan(value), where
            family.samples[labels] = value
    return families


def _labels(text: str, where: str) -> Labels:
    labels: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = LABEL.match(text, position)
        assert match, where
        labels.append((match["name"], match["value"].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")))
        position = match.end()
    assert len({name for name, _ in labels}) == len(labels), where
    return tuple(sorted(labels))


def value(families: dict[str, Family], name: str, **labels: str) -> float | None:
    return families[name].samples.get(tuple(sorted(labels.items())))


EXPECTED_FAMILIES = {
    "backupd_last_success_timestamp_seconds", "backupd_last_snapshot_duration_seconds", "backupd_snapshots",
    "backupd_repository_stored_bytes", "backupd_last_snapshot_files", "backupd_problem", "backupd_jobs_total",
    "backupd_next_run_timestamp_seconds", "backupd_repository_local_bytes",
    "backupd_mirror_last_success_timestamp_seconds", "backupd_mirror_snapshots_not_off_site",
    "backupd_mirror_bytes_waiting", "backupd_mirror_failing", "backupd_event_loop_worst_step_seconds",
    "backupd_event_loop_worst_step_cpu_seconds",
}


@pytest.fixture
def metrics_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    settings = tmp_path / "backupd.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "borg-base"}"\nhostname = "testbox"\njitter = 0\n'
                        f'metrics_file = "{metrics / "backupd.prom"}"\n[defaults]\nschedule = "manual"\n')
    daemon = DaemonProcess(socket=tmp_path / "run" / "backupd.sock", state_dir=tmp_path / "state",
                           settings=settings, log_path=tmp_path / "backupd.log")
    daemon.start()
    yield daemon
    if daemon.process is not None:
        daemon.stop()


def read_metrics(path: Path) -> dict[str, Family]:
    return parse_prometheus(path.read_text())


def test_the_metrics_file_follows_the_daemon(
    metrics_daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path
) -> None:
    path = tmp_path / "textfile" / "backupd.prom"
    at_start = wait_for(lambda: path.exists() and read_metrics(path))
    assert set(at_start) == EXPECTED_FAMILIES
    assert value(at_start, "backupd_snapshots") == 0 and at_start["backupd_problem"].samples == {}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644

    with metrics_daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)], "schedule": "daily 04:30"})
        job = client.call("snapshot", {"wait": True})
        families = wait_for(lambda: value(metrics := read_metrics(path), "backupd_snapshots") == 1 and metrics)
        status = client.call("status")
    last = status["last_snapshot"]
    assert value(families, "backupd_last_success_timestamp_seconds") == pytest.approx(last["time"])
    assert value(families, "backupd_last_snapshot_duration_seconds") == pytest.approx(last["duration"])
    assert value(families, "backupd_last_snapshot_files") == 100 == job["result"]["snapshot"]["files"]
    assert value(families, "backupd_repository_stored_bytes") == status["total_size"] > 0
    assert value(families, "backupd_next_run_timestamp_seconds") == pytest.approx(status["next_run"])
    assert value(families, "backupd_jobs_total", kind="snapshot", state="succeeded") == 1
    assert value(families, "backupd_jobs_total", kind="configure", state="succeeded") == 1
    assert families["backupd_problem"].samples == {}
    on_disk = sum(entry.stat().st_size for entry in repository.rglob("*") if entry.is_file() and "lock." not in entry.name)
    # Measured again as soon as the snapshot ended: the metrics file follows.
    local = wait_for(lambda: value(metrics := read_metrics(path), "backupd_repository_local_bytes") == on_disk
                     and metrics)
    assert local["backupd_mirror_snapshots_not_off_site"].samples == {}  # no mirror
    assert all(family.kind == "gauge" for family in families.values())

    repository.rename(repository.with_name("moved-away"))
    with metrics_daemon.client() as client:
        assert client.call("snapshot", {"wait": True})["state"] == "failed"
    failed = wait_for(lambda: (metrics := read_metrics(path))["backupd_problem"].samples and metrics)
    assert failed["backupd_problem"].samples == {(("code", "repository_not_found"),): 1}
    assert value(failed, "backupd_jobs_total", kind="snapshot", state="failed") == 1
    assert value(failed, "backupd_snapshots") == 1
    wait_for(lambda: [entry.name for entry in path.parent.iterdir()] == ["backupd.prom"])
    assert PASSPHRASE not in path.read_text()


def test_the_metrics_file_shows_the_daemons_worst_step(metrics_daemon: DaemonProcess, tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "backupd.prom"
    families = wait_for(lambda: path.exists() and read_metrics(path))
    family = families["backupd_event_loop_worst_step_seconds"]
    assert family.kind == "gauge"
    [(labels, seconds)] = family.samples.items()
    [(label, task)] = labels
    assert label == "task" and task.startswith(("backupd.", "trio.")), task
    # Plausible: a daemon that has just started has taken some time on its loop, and not whole seconds in one step.
    assert 0 < seconds < 5
    cpu = families["backupd_event_loop_worst_step_cpu_seconds"]
    assert cpu.kind == "gauge"
    # The same step: its task, and no more time on the CPU than it took (give or take the clocks' reads).
    [(cpu_labels, cpu_seconds)] = cpu.samples.items()
    assert cpu_labels == labels
    assert 0 < cpu_seconds < seconds + 0.001


def test_render_escapes_labels_and_help_and_the_parser_reads_them_back(tmp_path: Path) -> None:
    overview = {"problem": {"code": 'odd "code"\\\nhere', "message": "", "since": 0.0}, "snapshot_count": 3,
                "total_size": 2**40, "last_snapshot": None, "next_run": 1_800_000_000.5}
    history = [Job(id=str(n), kind="snapshot", trigger="schedule", started=0.0, state=state)
               for n, state in enumerate(("succeeded", "succeeded", "failed"))]
    path = tmp_path / "metrics.prom"
    path.write_text(render(collect(overview, history)))
    families = read_metrics(path)
    assert families["backupd_problem"].samples == {(("code", 'odd "code"\\\nhere'),): 1}
    assert value(families, "backupd_repository_stored_bytes") == 2**40
    assert value(families, "backupd_next_run_timestamp_seconds") == 1_800_000_000.5
    assert value(families, "backupd_jobs_total", kind="snapshot", state="succeeded") == 2
    assert families["backupd_last_success_timestamp_seconds"].samples == {}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "text",
    [
        "backupd_snapshots 1\n",                                         # no HELP/TYPE
        "# HELP a x\n# TYPE a gauge\na 1",                                # no final newline
        "# HELP a x\n# TYPE a gauge\na{code=\"x} 1\n",                    # broken label
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",                         # duplicate series
        "# HELP a x\n# TYPE a meter\na 1\n",                              # unknown type
    ],
)
def test_the_parser_is_strict(text: str) -> None:
    with pytest.raises((AssertionError, ValueError)):
        parse_prometheus(text)


PLANT_LINK = """
import os, sys
os.symlink(sys.argv[1], sys.argv[2])
"""


def test_a_metrics_folder_others_can_write_is_refused_until_the_operator_closes_it(tmp_path: Path) -> None:
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    with folder_others_can_reach() as shared:
        textfile = shared / "textfile"
        textfile.mkdir()
        textfile.chmod(0o777)
        metrics_file = textfile / "backupd.prom"
        run_as_user(NOBODY, PLANT_LINK, str(victim), str(metrics_file))
        settings = tmp_path / "backupd.toml"
        settings.write_text(f'metrics_file = "{metrics_file}"\n[defaults]\nschedule = "manual"\n')
        daemon = DaemonProcess(socket=tmp_path / "backupd.sock", state_dir=tmp_path / "state",
                               settings=settings, log_path=tmp_path / "backupd.log")
        daemon.start()
        try:
            wait_for(lambda: "cannot write the metrics file" in daemon.log())
            assert f"the folder {textfile} can be written by other users (mode 777)" in daemon.log()
            with daemon.client() as client:
                assert client.call("status")["state"] == "unconfigured"
            assert victim.read_text() == "precious\n"
            assert [entry.lstat().st_uid for entry in textfile.iterdir()] == [NOBODY]

            textfile.chmod(0o755)
            daemon.restart()
            families = wait_for(lambda: not metrics_file.is_symlink() and metrics_file.exists()
                                and read_metrics(metrics_file))
        finally:
            if daemon.process is not None:
                daemon.stop()
        assert set(families) == EXPECTED_FAMILIES and metrics_file.lstat().st_uid == 0
        assert victim.read_text() == "precious\n"
