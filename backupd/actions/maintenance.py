"""Maintenance: prune this box's old archives, compact the repository, check its consistency.

These run one borg command each and leave the repository lock to the job that calls them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from backupctl.protocol import ErrorCode, RpcError
from backupd.archive_names import OwnArchives
from backupd.borg import commands
from backupd.borg.errors import EXIT_SUCCESS, BorgFailed, found_damage
from backupd.borg.log_json import BorgEvent, ListedItems, LogMessage
from backupd.borg.prune_list import PruneVerdict, parse_prune_line
from backupd.config import BackupConfig
from backupd.borg.invoker import BorgInvoker

log = logging.getLogger(__name__)

MAX_CHECK_ERRORS = 100

OnEvent = Callable[[BorgEvent], None]


class PruneRefused(RpcError):
    """Prune would leave this box without a single archive; nothing was deleted."""

    def __init__(self, message: str, data: dict[str, object] | None = None) -> None:
        super().__init__(ErrorCode.PRUNE_REFUSED, message, data)


@dataclass(frozen=True)
class PruneOutcome:
    kept: tuple[str, ...]
    pruned: tuple[str, ...]


@dataclass(frozen=True)
class CheckOutcome:
    ok: bool
    errors: tuple[str, ...]


async def prune_archives(borg: BorgInvoker, config: BackupConfig, own: OwnArchives) -> PruneOutcome:
    """Apply the configured keep rules to this box's own archives (names of exactly its form),
    after a dry run shows that at least one of them survives and that no other is touched."""
    if not any(count > 0 for count in config.keep.values()):
        raise PruneRefused(
            "Every keep rule is 0, so pruning would delete every snapshot; nothing was deleted",
            {"keep": dict(config.keep)},
        )
    planned = await _run_prune(borg, config, own, dry_run=True)
    refuse_unsafe_plan(planned, own)
    return await _run_prune(borg, config, own, dry_run=False)


async def compact_repository(borg: BorgInvoker, config: BackupConfig, on_event: OnEvent | None = None) -> None:
    """Free the space of deleted archives."""
    await borg.run(commands.compact(config.repository), config=config, on_event=on_event, low_priority=True)


async def check_repository(
    borg: BorgInvoker, config: BackupConfig, on_event: OnEvent | None = None
) -> CheckOutcome:
    """Verify the repository and its archives; damage found is an outcome, not an exception.

    Raises BorgFailed when borg could not check at all (passphrase, lock, connection, ...).
    """
    error_lines: list[str] = []

    def collect(event: BorgEvent) -> None:
        if isinstance(event, LogMessage) and event.is_error and event.message.strip():
            if len(error_lines) < MAX_CHECK_ERRORS:
                error_lines.append(event.message.strip())
            else:  # the last line sums the check up
                error_lines[-1] = event.message.strip()
        if on_event is not None:
            on_event(event)

    try:
        command = commands.check(config.repository)
        result = await borg.run(command, config=config, on_event=collect, low_priority=True)
    except BorgFailed as failure:
        if not found_damage(failure):
            raise
        return CheckOutcome(ok=False, errors=tuple(error_lines) or (failure.message,))
    if result.exit_code == EXIT_SUCCESS and not error_lines:
        return CheckOutcome(ok=True, errors=())
    # Borg ends a check that found problems with a warning exit (1) after logging them as errors.
    return CheckOutcome(ok=False, errors=tuple(error_lines) or _warning_lines(result.log, result.exit_code))


def refuse_unsafe_plan(planned: PruneOutcome, own: OwnArchives) -> None:
    """Refuse a plan that deletes every archive of this box, or names any it did not make."""
    foreign = [name for name in (*planned.kept, *planned.pruned) if not own.owns(name)]
    if foreign:
        raise PruneRefused(
            f"Borg's prune plan names snapshots this box did not make (not {own.prefix}<UTC time>); "
            "nothing was deleted",
            {"foreign": foreign[:5]},
        )
    if planned.pruned and not planned.kept:
        raise PruneRefused(
            f"The keep rules would delete all {len(planned.pruned)} snapshots of this box; nothing was deleted",
            {"would_prune": len(planned.pruned)},
        )


def _prune_outcome(verdicts: list[PruneVerdict]) -> PruneOutcome:
    return PruneOutcome(
        kept=tuple(verdict.archive for verdict in verdicts if verdict.action == "keep"),
        pruned=tuple(verdict.archive for verdict in verdicts if verdict.action == "prune"),
    )


async def _run_prune(borg: BorgInvoker, config: BackupConfig, own: OwnArchives, dry_run: bool) -> PruneOutcome:
    verdicts: list[PruneVerdict] = []
    unreadable: list[str] = []

    def collect(event: BorgEvent) -> None:
        if isinstance(event, ListedItems):
            for item in event:
                verdict = parse_prune_line(item.message)
                if verdict is None:
                    unreadable.append(item.message)
                else:
                    verdicts.append(verdict)

    command = commands.prune(config.repository, own.glob(), config.keep, dry_run=dry_run)
    await borg.run(command, config=config, on_event=collect)
    if unreadable:
        log.warning("borg prune listed %d lines that could not be read, first: %r", len(unreadable), unreadable[0])
        if dry_run:
            raise PruneRefused(
                "Borg's prune plan could not be read, so it was not carried out; nothing was deleted",
                {"unreadable": unreadable[:5]},
            )
    return _prune_outcome(verdicts)


def _warning_lines(messages: Iterable[LogMessage], exit_code: int) -> tuple[str, ...]:
    warnings = [message.message.strip() for message in messages if message.message.strip()]
    return tuple(warnings[-MAX_CHECK_ERRORS:]) or (f"borg check reported problems (exit code {exit_code})",)
