"""The bench runs end to end on the smoke size and reports every figure with a number (no timing is judged here)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.samples import Window
from bench.stall_probe import STALL_BOUND_SECONDS, Stall, StallProbe, worst_stall_within

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 120.0
EXPECTED_FIGURES = {
    "full_snapshot", "unchanged_snapshot", "restore",
    "status_one_client_snapshot_p50", "status_one_client_snapshot_p99", "status_one_client_snapshot_max",
    "status_one_client_idle_p50", "status_one_client_idle_p99", "status_one_client_idle_max",
    "status_many_clients_idle_calls_per_second",
    "status_many_clients_idle_p50", "status_many_clients_idle_p99", "status_many_clients_idle_max",
    "status_many_clients_snapshot_calls_per_second",
    "status_many_clients_snapshot_p50", "status_many_clients_snapshot_p99", "status_many_clients_snapshot_max",
    "idle_resident_memory", "idle_cpu", "resident_memory_at_end", "backupctl_status_process",
}
WITH_REFERENCE = {
    "full_snapshot", "unchanged_snapshot", "restore", "backupctl_status_process",
    "status_one_client_snapshot_p50", "status_one_client_snapshot_p99", "status_one_client_snapshot_max",
    "status_many_clients_snapshot_calls_per_second", "status_many_clients_snapshot_p50",
    "status_many_clients_snapshot_p99", "status_many_clients_snapshot_max",
}
WITH_BUDGET = {
    "full_snapshot", "unchanged_snapshot", "restore", "status_one_client_snapshot_p99",
    "status_many_clients_idle_calls_per_second", "idle_resident_memory", "idle_cpu",
}
BORGMATIC_FIGURES = {"borgmatic_full_snapshot", "borgmatic_unchanged_snapshot"}


@dataclass(frozen=True)
class SmokeRun:
    returncode: int
    stdout: str
    stderr: str
    document: dict[str, Any]
    markdown: str

    @property
    def figures(self) -> dict[str, dict[str, Any]]:
        return {figure["key"]: figure for figure in self.document["figures"]}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    folder = tmp_path_factory.mktemp("bench")
    json_path, markdown_path = folder / "figures.json", folder / "figures.md"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(json_path), "--markdown", str(markdown_path)],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return SmokeRun(
        returncode=completed.returncode, stdout=completed.stdout, stderr=completed.stderr,
        document=json.loads(json_path.read_text(encoding="utf-8")),
        markdown=markdown_path.read_text(encoding="utf-8"),
    )


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_every_figure_is_reported(smoke_run: SmokeRun) -> None:
    keys = set(smoke_run.figures)
    assert EXPECTED_FIGURES <= keys
    assert keys - EXPECTED_FIGURES <= BORGMATIC_FIGURES


def test_every_figure_has_a_number(smoke_run: SmokeRun) -> None:
    for key, figure in smoke_run.figures.items():
        assert is_number(figure["daemon"]), key
        if key in WITH_REFERENCE or key in BORGMATIC_FIGURES:
            assert is_number(figure["reference"]), key
            assert is_number(figure["ratio"]), key


def test_budgets_are_judged(smoke_run: SmokeRun) -> None:
    judged = {key for key, figure in smoke_run.figures.items() if figure["budget"] is not None}
    assert judged == WITH_BUDGET
    for key in WITH_BUDGET:
        assert isinstance(smoke_run.figures[key]["within_budget"], bool), key


def test_machine_and_run_are_described(smoke_run: SmokeRun) -> None:
    machine, run = smoke_run.document["machine"], smoke_run.document["run"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0
    assert machine["kernel"] and machine["borg_version"] and machine["measured_at"]
    assert len(machine["load_average_at_start"]) == 3
    assert run["preset"] == "smoke" and run["pair_count"] == 1
    assert run["dataset"]["file_count"] == 100 and 0 < run["dataset"]["text_bytes"] < run["dataset"]["total_bytes"]


def test_markdown_table_has_a_row_per_figure(smoke_run: SmokeRun) -> None:
    rows = smoke_run.markdown.strip().splitlines()
    assert rows[0] == "| figure | daemon | reference | ratio | budget | within budget |"
    assert len(rows) == 2 + len(smoke_run.figures)
    assert smoke_run.markdown in smoke_run.stdout


SCALE_PHASES = 5


def test_the_scale_run_reports_each_phase(tmp_path: Path) -> None:
    json_path = tmp_path / "scale.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--scale-files", "200", "--scale-archives", "30", "--scale-jobs", "3",
         "--json", str(json_path)],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["files"] == 200 and document["archives"] == 30
    assert is_number(document["snapshot_ratio"]) and is_number(document["restore_cpu"]["share"])
    phases = document["phases"]
    assert len(phases) == SCALE_PHASES
    for phase in phases:
        assert phase["status_calls"] > 0 and is_number(phase["status_p99_seconds"]), phase["name"]
        if phase["worst_step_seconds"] is not None:
            assert is_number(phase["worst_step_cpu_seconds"]) and is_number(phase["worst_cpu_step_cpu_seconds"])
            assert phase["worst_cpu_step_cpu_seconds"] >= phase["worst_step_cpu_seconds"]
    assert [is_number(phase["peak_resident_bytes"]) for phase in phases] == [False, True, True, False, False]
    for phase in phases:
        stall = phase["probe_worst_stall_seconds"]
        assert stall is None or (is_number(stall) and is_number(phase["probe_worst_stall_cpu_seconds"])), phase
    assert document["snapshot_pages"]["calls"] > 0 and document["job_pages"]["calls"] > 0
    assert 0 < document["worst_step_gauge_seconds"] < RUN_TIMEOUT
    assert 0 < document["worst_step_gauge_cpu_seconds"] < document["worst_step_gauge_seconds"] + 0.001
    assert "| snapshot of 200 files |" in completed.stdout


def test_the_stall_probe_runs_beside_and_stops_when_told(tmp_path: Path) -> None:
    probe = StallProbe(tmp_path / "stalls.jsonl")
    probe.start()
    time.sleep(0.5)
    probe.stop()
    assert all(stall.seconds > STALL_BOUND_SECONDS for stall in probe.stalls())
    stalls = [Stall(ended=10.0, seconds=0.003, cpu_seconds=0.001), Stall(ended=11.0, seconds=0.009, cpu_seconds=0.008),
              Stall(ended=20.0, seconds=0.050, cpu_seconds=0.0)]
    assert worst_stall_within(stalls, Window(9.0, 12.0)) == stalls[1]
    assert worst_stall_within(stalls, Window(12.0, 19.0)) is None
