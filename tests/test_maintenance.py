"""Prune, compact and check against real borg on copies of one repository with dated archives."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio

from backupctl.protocol import ErrorCode
from backupd.archive_names import OwnArchives
from backupd.actions.maintenance import (
    CheckOutcome,
    PruneOutcome,
    PruneRefused,
    check_repository,
    compact_repository,
    prune_archives,
    refuse_unsafe_plan,
)
from backupd.borg import commands
from backupd.borg.errors import BorgFailed
from backupd.borg.log_json import BorgEvent, ListedItems, ProgressPercent
from backupd.borg.prune_list import PruneVerdict, parse_prune_line
from backupd.borg.runner import run_borg
from backupd.config import BackupConfig
from backupd.service import Service
from backupd.settings import Settings
from backupd.store import Store

BORG = (sys.executable, "-m", "borg")
PASSPHRASE = "maintenance ✓ passphrase"
OWN = OwnArchives("box-")
OTHER = OwnArchives("otherbox-")
# Archives made by hand, and by a box whose host name starts with this one's.
NOT_MADE_BY_THIS_BOX = ("box-manual-before-upgrade", "box-kitchen-{time:%Y-%m-%dT%H:%M:%SZ}")
FIRST_DAY = datetime(2024, 1, 2, 12, 0, tzinfo=timezone.utc)
DAYS_BETWEEN = 4
OWN_DAYS = 27
# Three archives on the newest day, so the hourly rule and the daily rule pick differently.
NEWEST_DAY_HOURS = (8, 12, 16)
KEEP = {"hourly": 2, "daily": 7, "weekly": 0, "monthly": 3, "yearly": 0}


@dataclass(frozen=True)
class Template:
    repository: Path
    archives: dict[str, datetime]

    @property
    def own(self) -> set[str]:
        return {name for name in self.archives if OWN.owns(name)}

    @property
    def others(self) -> set[str]:
        return set(self.archives) - self.own

    @property
    def other_box(self) -> set[str]:
        return {name for name in self.archives if OTHER.owns(name)}


def archive_times() -> dict[str, datetime]:
    """About 30 archives of this box over four months, and two of another box in between."""
    days = [FIRST_DAY + timedelta(days=DAYS_BETWEEN * index) for index in range(OWN_DAYS)]
    newest = days[-1] + timedelta(days=1)
    times = [*days, *(newest.replace(hour=hour) for hour in NEWEST_DAY_HOURS)]
    archives = {OWN.name_at(time.timestamp()): time for time in times}
    for time in (days[3], days[-2]):
        archives[OTHER.name_at(time.timestamp())] = time + timedelta(minutes=30)
    for name, time in zip(NOT_MADE_BY_THIS_BOX, (days[5], days[-3])):
        archives[name.format(time=time)] = time + timedelta(minutes=10)
    return archives


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """Built once (each borg create costs a process); every test works on its own copy."""
    root = tmp_path_factory.mktemp("maintenance-template")
    archives = archive_times()
    trio.run(build_template, root, archives)
    return Template(root / "repo", archives)


async def build_template(root: Path, archives: dict[str, datetime]) -> None:
    env = {"BORG_BASE_DIR": str(root / "borg-base")}
    repository = str(root / "repo")
    source = root / "source"
    source.mkdir()
    with trio.fail_after(120):
        await run_borg(commands.init(repository, "repokey-blake2"), borg=BORG, passphrase=PASSPHRASE, env=env)
        for name, time in sorted(archives.items(), key=lambda item: item[1]):
            (source / "changing.bin").write_bytes(os.urandom(20_000))
            command = commands.create(repository, name, [str(source)], timestamp=f"{time:%Y-%m-%dT%H:%M:%S}")
            await run_borg(command, borg=BORG, passphrase=PASSPHRASE, env=env)


def make_service(tmp_path: Path, repository: Path, borg: tuple[str, ...] = BORG, **config: object) -> Service:
    store = Store(tmp_path / "state")
    store.open()
    settings = Settings(state_dir=tmp_path / "state", borg_base_dir=tmp_path / "borg-base", borg=borg)
    service = Service(settings, store)
    service.configuration.adopt(BackupConfig(
        repository=str(repository), passphrase=PASSPHRASE, sources=("/data",), keep=dict(KEEP), **config
    ))
    return service


@pytest.fixture
def repository(tmp_path: Path, template: Template) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(template.repository, copy)
    return copy


@pytest.fixture
def service(tmp_path: Path, repository: Path) -> Service:
    return make_service(tmp_path, repository)


async def archive_names(service: Service) -> set[str]:
    listing = await service.borg.run(commands.list_archives(service.require_config().repository))
    return {archive["name"] for archive in listing.json["archives"]}


def expected_kept(archives: dict[str, datetime], keep: dict[str, int]) -> set[str]:
    """Borg's documented prune semantics: per rule, newest first, the newest archive of each new
    period is kept, until the rule's count is reached; an archive kept by an earlier rule takes
    its period without counting for a later rule; a rule that falls short keeps the oldest archive."""
    periods: dict[str, Callable[[datetime], tuple[int, ...]]] = {
        "hourly": lambda local: (local.year, local.month, local.day, local.hour),
        "daily": lambda local: (local.year, local.month, local.day),
        "weekly": lambda local: local.isocalendar()[:2],
        "monthly": lambda local: (local.year, local.month),
        "yearly": lambda local: (local.year,),
    }
    newest_first = sorted(archives, key=lambda name: archives[name], reverse=True)
    kept: set[str] = set()
    for rule, period_of in periods.items():
        wanted = keep.get(rule, 0)
        count, last_period = 0, None
        for name in newest_first:
            if count == wanted:
                break
            period = period_of(archives[name].astimezone())
            if period != last_period:
                last_period = period
                if name not in kept:
                    kept.add(name)
                    count += 1
        if count < wanted and newest_first[-1] not in kept:
            kept.add(newest_first[-1])
    return kept


async def test_prune_keeps_exactly_what_the_rules_say(service: Service, template: Template) -> None:
    own = {name: time for name, time in template.archives.items() if name in template.own}
    kept = expected_kept(own, KEEP)
    oldest = min(own, key=lambda name: own[name])
    assert oldest in kept, "the monthly rule runs out of months, so the oldest archive is kept too"
    with trio.fail_after(30):
        outcome = await prune_archives(service.borg, service.require_config(), OWN)
        remaining = await archive_names(service)
    assert set(outcome.kept) == kept
    assert set(outcome.pruned) == template.own - kept
    assert len(outcome.kept) + len(outcome.pruned) == len(template.own)
    assert remaining == kept | template.others


async def test_prune_of_another_prefix_leaves_this_box_alone(service: Service, template: Template) -> None:
    with trio.fail_after(30):
        config = replace(service.require_config(), keep={"yearly": 1})
        outcome = await prune_archives(service.borg, config, OTHER)
        remaining = await archive_names(service)
    newest_other = max(template.other_box, key=lambda name: template.archives[name])
    assert outcome == PruneOutcome(kept=(newest_other,), pruned=tuple(template.other_box - {newest_other}))
    assert remaining == set(template.archives) - template.other_box | {newest_other}


async def test_prune_never_touches_archives_this_box_did_not_make(service: Service, template: Template) -> None:
    with trio.fail_after(30):
        outcome = await prune_archives(service.borg, replace(service.require_config(), keep={"daily": 1}), OWN)
        remaining = await archive_names(service)
    assert template.others <= remaining
    assert {"box-manual-before-upgrade", *(name for name in template.others if name.startswith("box-kitchen-"))} <= remaining
    assert set(outcome.pruned) <= template.own and len(outcome.kept) == 1


async def test_a_prefix_is_literal_and_never_a_pattern(service: Service, template: Template) -> None:
    with trio.fail_after(30):
        outcome = await prune_archives(service.borg, replace(service.require_config(), keep={"daily": 1}), OwnArchives("*"))
        remaining = await archive_names(service)
    assert outcome == PruneOutcome(kept=(), pruned=())
    assert remaining == set(template.archives)


@pytest.mark.parametrize(
    "keep", [{"hourly": 0, "daily": 0, "weekly": 0, "monthly": 0, "yearly": 0}, {}], ids=["all-zero", "no-rules"]
)
async def test_prune_refuses_keep_rules_that_keep_nothing(
    service: Service, template: Template, keep: dict[str, int]
) -> None:
    with trio.fail_after(30):
        with pytest.raises(PruneRefused) as refused:
            await prune_archives(service.borg, replace(service.require_config(), keep=keep), OWN)
        remaining = await archive_names(service)
    assert refused.value.code == "prune_refused"
    assert "nothing was deleted" in refused.value.message
    assert remaining == set(template.archives)


async def test_dry_run_lines_from_borg_read_as_the_real_prune_does(service: Service, template: Template) -> None:
    config = service.require_config()
    planned: list[PruneVerdict] = []

    def collect(event: BorgEvent) -> None:
        if isinstance(event, ListedItems):
            for item in event:
                verdict = parse_prune_line(item.message)
                assert verdict is not None, item.message
                planned.append(verdict)

    with trio.fail_after(30):
        dry_run = commands.prune(config.repository, OWN.glob(), config.keep, dry_run=True)
        await service.borg.run(dry_run, on_event=collect)
        assert await archive_names(service) == set(template.archives)
        outcome = await prune_archives(service.borg, config, OWN)
    assert len(planned) == len(template.own)
    assert {verdict.archive for verdict in planned if verdict.action == "keep"} == set(outcome.kept)
    assert {verdict.archive for verdict in planned if verdict.action == "prune"} == set(outcome.pruned)


OWN_1, OWN_2 = "box-2026-11-27T06:30:00Z", "box-2026-11-28T06:30:00Z"


@pytest.mark.parametrize(
    "plan",
    [
        PruneOutcome(kept=(), pruned=(OWN_1, OWN_2)),
        PruneOutcome(kept=(OWN_2,), pruned=("otherbox-2026-11-27T06:30:00Z",)),
        PruneOutcome(kept=(OWN_2,), pruned=("box-manual-before-upgrade",)),
        PruneOutcome(kept=(OWN_2,), pruned=("box-kitchen-2026-11-28T06:30:00Z",)),
        PruneOutcome(kept=(OWN_2,), pruned=(OWN_1 + ".checkpoint",)),
    ],
    ids=["every-own-archive", "another-box", "made-by-hand", "host-name-sharing-the-prefix", "checkpoint"],
)
def test_a_plan_that_empties_the_box_or_names_what_it_did_not_make_is_refused(plan: PruneOutcome) -> None:
    with pytest.raises(PruneRefused):
        refuse_unsafe_plan(plan, OWN)


@pytest.mark.parametrize(
    "plan",
    [PruneOutcome(kept=(), pruned=()), PruneOutcome(kept=(OWN_2,), pruned=(OWN_1,))],
    ids=["nothing-listed", "normal"],
)
def test_a_plan_that_keeps_something_of_the_box_goes_ahead(plan: PruneOutcome) -> None:
    refuse_unsafe_plan(plan, OWN)


def segment_bytes(repository: Path) -> int:
    return sum(path.stat().st_size for path in (repository / "data").rglob("*") if path.is_file())


async def test_compact_after_prune_frees_space_and_the_repository_checks_ok(
    service: Service, repository: Path
) -> None:
    config = service.require_config()
    progress: list[ProgressPercent] = []
    with trio.fail_after(60):
        outcome = await prune_archives(service.borg, config, OWN)
        before = segment_bytes(repository)
        await compact_repository(service.borg, config)
        after = segment_bytes(repository)
        checked = await check_repository(service.borg, config, on_event=collect_progress(progress))
        remaining = await archive_names(service)
    assert after < before - 10_000 * len(outcome.pruned)
    assert checked == CheckOutcome(ok=True, errors=())
    assert {event.msgid for event in progress} >= {"repository.check"}
    assert set(outcome.kept) <= remaining


def collect_progress(into: list[ProgressPercent]) -> Callable[[BorgEvent], None]:
    return lambda event: into.append(event) if isinstance(event, ProgressPercent) else None


async def test_check_of_a_healthy_repository_is_ok(service: Service) -> None:
    with trio.fail_after(30):
        assert await check_repository(service.borg, service.require_config()) == CheckOutcome(ok=True, errors=())


async def test_check_of_a_damaged_repository_reports_errors(service: Service, repository: Path) -> None:
    segments = [path for path in (repository / "data").rglob("*") if path.is_file()]
    largest = max(segments, key=lambda segment: segment.stat().st_size)
    with open(largest, "r+b") as segment:
        segment.seek(largest.stat().st_size // 2)
        segment.write(b"\xff" * 64)
    with trio.fail_after(30):
        outcome = await check_repository(service.borg, service.require_config())
    assert outcome.ok is False
    assert any("checksum mismatch" in line for line in outcome.errors)
    assert "errors found" in outcome.errors[-1]


async def test_check_that_cannot_open_the_repository_raises(service: Service, tmp_path: Path) -> None:
    config = service.require_config()
    with trio.fail_after(30):
        with pytest.raises(BorgFailed) as wrong_passphrase:
            await check_repository(service.borg, replace(config, passphrase="not the passphrase"))
        with pytest.raises(BorgFailed) as missing:
            await check_repository(service.borg, replace(config, repository=str(tmp_path / "nowhere")))
    assert wrong_passphrase.value.code == ErrorCode.PASSPHRASE_WRONG
    assert missing.value.code == ErrorCode.REPOSITORY_NOT_FOUND


def priority_reporting_borg(tmp_path: Path) -> tuple[tuple[str, ...], Path]:
    """A borg prefix that writes down its own niceness and I/O class, then becomes borg."""
    report = tmp_path / "priority.txt"
    script = tmp_path / "priority_borg.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, shutil, subprocess, sys
            ionice = shutil.which("ionice")
            io_class = subprocess.run([ionice, "-p", str(os.getpid())], capture_output=True, text=True).stdout
            with open({str(report)!r}, "a") as report:
                report.write(f"{{os.nice(0)}} {{io_class.split(':')[0].strip() if ionice else '-'}}\\n")
            os.execv(sys.executable, [sys.executable, "-m", "borg", *sys.argv[1:]])
            """
        )
    )
    return (sys.executable, str(script)), report


@pytest.mark.skipif(shutil.which("nice") is None, reason="needs nice")
async def test_check_runs_borg_at_idle_priority(tmp_path: Path, repository: Path) -> None:
    borg, report = priority_reporting_borg(tmp_path)
    service = make_service(tmp_path, repository, borg=borg)
    with trio.fail_after(30):
        outcome = await check_repository(service.borg, service.require_config())
        await service.borg.run(commands.list_archives(str(repository)))
    assert outcome.ok
    low, normal = (line.split() for line in report.read_text().splitlines())
    assert int(low[0]) == 19 and int(normal[0]) == os.nice(0)
    if shutil.which("ionice"):
        assert low[1] == "idle" and normal[1] != "idle"
