"""All-or-nothing replacement of files and folders by the content of a snapshot.

borg extracts each target into a staging folder on the target's own mount.
`swap_into_place()` then swaps the staged content into place with renames, keeping the
previous content aside until every target is swapped, and `clean_up()` deletes it. A journal
in the state folder (`journal`), rewritten atomically before each step, lets `recover()` bring
every target back to one whole state after a crash: the previous content when the swap had
not finished, the snapshot's once it had.

Other users may own the folders a restore writes into, and may rename anything there while
it runs. So the staging folder and the folder that keeps the previous content aside are
made, 0700 and root's, in a folder only root can change (`staging_place`): the target's
parent when that is safe, else the nearest safe folder above it on the same mount. borg's
working directory is the held descriptor of that staging folder. Everything in folders
others can write is done relative to descriptors reached without following a symbolic link
(`nofollow`), and a folder the restore made is recognised by its device and inode before it
is emptied or removed.

A target that cannot be renamed because it is a mount point keeps its own folder: its
children are swapped instead, through staging and aside folders inside it, and the staged
folder's own metadata is applied to it at the end. Such a target must itself be safe.

Plain blocking code: the daemon calls it from a worker thread.
"""

from __future__ import annotations

import errno
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backupd.restore.errors import RestoreError, counted, describe
from backupd.restore.folder_metadata import apply_metadata_if_present
from backupd.restore.journal import BY_CHILDREN, COMMITTED, STAGING, SWAPPING, Journal, TargetPlan, remove_temporary_files
from backupd.restore.keep_excluded import keep_excluded
from backupd.restore.nofollow import (
    PRIVATE_FOLDER_MODE,
    opened_own_folder,
    remove_empty_folder,
    remove_folder_if_empty,
    remove_tree,
)
from backupd.restore.plan import make_planned_folders, plan_restore
from backupd.restore.swap import check_staged_content, swap, undo


@dataclass(frozen=True)
class ExtractGroup:
    cwd: Path  # run `borg extract` with this working directory
    targets: tuple[str, ...]
    archive_paths: tuple[str, ...]  # what to extract for each target: borg creates cwd/<archive path>


class RestoreTransaction:
    """One restore's swap of staged content into place; see the module's documentation."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._swap_started = False

    @classmethod
    def prepare(
        cls,
        journal_path: Path,
        job_id: str,
        targets: Sequence[str],
        *,
        swap_children: Collection[str] = (),
        unfinished: Collection[Path] = (),
        archive_paths: Mapping[str, str] | None = None,
        keep_excluded: Sequence[str] = (),
    ) -> RestoreTransaction:
        """Validate targets (absolute, normalised, no target inside another, none that an
        unfinished earlier restore still holds, parents exist or can be created and written),
        choose a staging folder per target on the target's mount (a fresh 0700 folder named
        `.backupd-restore-<job_id>` in a folder no other user can change; inside the target
        when it is a mount point, or is listed in `swap_children`), write the journal (phase
        "staging") and return. Raises RestoreError."""
        journal = plan_restore(journal_path, job_id, targets, swap_children=swap_children, unfinished=unfinished,
                               archive_paths=archive_paths or {}, keep_excluded=keep_excluded)
        journal_path.parent.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
        journal.save()
        try:
            make_planned_folders(journal)
        except OSError as error:
            _roll_back(journal)
            raise RestoreError(f"cannot prepare the restore: {describe(error)}") from None
        return cls(journal)

    def extract_groups(self) -> list[ExtractGroup]:
        groups: dict[str, list[TargetPlan]] = {}
        for plan in self._journal.targets:
            groups.setdefault(plan.staging, []).append(plan)
        return [ExtractGroup(Path(cwd), tuple(plan.path for plan in plans), tuple(plan.in_archive for plan in plans))
                for cwd, plans in groups.items()]

    @contextmanager
    def opened_staging_folder(self, group: ExtractGroup) -> Iterator[int]:
        """A descriptor of the group's staging folder, checked to be the one prepare() made:
        borg's working directory."""
        try:
            with opened_own_folder(str(group.cwd), self._journal.made.get(str(group.cwd))) as fd:
                yield fd
        except OSError as error:
            raise RestoreError(f"cannot open the staging folder: {describe(error)}") from None

    def swap_into_place(self) -> None:
        """Swap every target (phase "swapping", each step journaled before it is taken: the
        target renamed aside to `.backupd-previous-<job_id>/...`, the staged content renamed
        into place), then phase "committed": every target holds the snapshot's content, and the
        previous content waits aside for clean_up(). Nothing is swapped unless the snapshot
        held every target. If a step fails, the steps done so far are undone and RestoreError
        is raised. After any RestoreError, abort() deletes whatever is left."""
        if self._swap_started or self._journal.removed:
            raise RestoreError("this restore was already committed or aborted")
        self._swap_started = True
        journal = self._journal
        check_staged_content(journal)
        try:
            journal.set_phase(SWAPPING)
            for plan in journal.targets:
                swap(journal, plan)
            journal.set_phase(COMMITTED)
        except BaseException as failure:
            self._undo_after(failure)
            raise

    def clean_up(self) -> None:
        """After swap_into_place(): delete the previous content and the staging folders, and
        remove the journal. A crash before it ends is finished by recover()."""
        journal = self._journal
        try:
            _finish(journal)
        except OSError as error:
            raise RestoreError(
                f"the snapshot's content is in place, but cleaning up failed: {describe(error)}; "
                "the clean-up is tried again when backupd starts"
            ) from None

    def abort(self) -> None:
        """Undo any swap done, delete the staging folders, remove the journal. Idempotent.
        After a swap whose clean-up failed, finish that clean-up instead."""
        journal = self._journal
        if journal.removed:
            return
        try:
            if journal.phase == COMMITTED:
                _finish(journal)
            else:
                _roll_back(journal)
        except OSError as error:
            raise RestoreError(f"cannot undo the restore: {describe(error)}") from None

    def _undo_after(self, failure: BaseException) -> None:
        reason = describe(failure)
        try:
            _roll_back(self._journal)
        except (OSError, RestoreError) as undo_error:
            if self._journal.phase == STAGING:
                raise RestoreError(
                    f"the restore failed ({reason}); the previous content is back in place, but "
                    f"deleting the staging folders failed: {describe(undo_error)}"
                ) from failure
            raise RestoreError(
                f"the restore failed ({reason}), and undoing it failed too: {describe(undo_error)}"
            ) from failure
        if isinstance(failure, Exception):
            raise RestoreError(
                f"the restore failed and the previous content is back in place: {reason}"
            ) from failure


def recover(journal_path: Path) -> str | None:
    """At daemon start: if a journal exists, bring every target back to a whole state: phase
    "staging" -> delete staging (targets untouched); phase "swapping" -> undo (previous content
    back everywhere); phase "committed" -> finish the clean-up (the snapshot's content stays).
    Return a one-line description of what was done, None if there is no journal."""
    remove_temporary_files(journal_path)
    journal = Journal.load(journal_path)
    if journal is None:
        return None
    count = counted(len(journal.targets), "target")
    phase = journal.phase
    try:
        if phase == COMMITTED:
            _finish(journal)
        else:
            _roll_back(journal)
    except OSError as error:
        raise RestoreError(
            f"cannot recover the interrupted restore {journal.job_id}: {describe(error)}"
        ) from None
    if phase == STAGING:
        return (
            f"restore {journal.job_id} was interrupted before any target was replaced: "
            f"deleted its staging folders, {count} untouched"
        )
    if phase == SWAPPING:
        return (
            f"restore {journal.job_id} was interrupted while replacing targets: "
            f"put the previous content of {count} back"
        )
    return (
        f"restore {journal.job_id} was interrupted after replacing every target: "
        f"kept the snapshot's content in {count} and removed the previous content"
    )


def _finish(journal: Journal) -> None:
    if journal.keep_excluded:
        keep_excluded(journal)
    for folder in journal.aside_folders + journal.staging_folders:
        remove_tree(folder, journal.made.get(folder))
    for plan in journal.targets:
        if plan.method == BY_CHILDREN and plan.new_metadata is not None:
            apply_metadata_if_present(plan.path, plan.new_metadata)
    journal.remove()


def _roll_back(journal: Journal) -> None:
    """Put the previous content back where a swap started, then delete what the restore
    created. Raises RestoreError, keeping the journal, when something else took a place the
    previous content must go back to."""
    if journal.phase == SWAPPING:
        undone = [undo(journal, plan) for plan in reversed(journal.targets)]
        conflicts = [conflict for conflict in undone if conflict is not None]
        if conflicts:
            raise RestoreError(
                f"could not put the previous content back: {'; '.join(conflicts)}. Move the "
                "entries in the way elsewhere, then restart backupd"
            )
        journal.set_phase(STAGING)
    for folder in journal.staging_folders:
        remove_tree(folder, journal.made.get(folder))
    for folder in journal.aside_folders:
        _remove_empty_aside_folder(folder)
    for plan in journal.targets:
        if plan.method == BY_CHILDREN and plan.old_metadata is not None:
            apply_metadata_if_present(plan.path, plan.old_metadata)
    for folder in reversed(journal.created_folders):
        remove_folder_if_empty(folder, journal.made.get(folder))
    journal.remove()


def _remove_empty_aside_folder(folder: str) -> None:
    try:
        remove_empty_folder(folder)
    except OSError as error:
        if error.errno == errno.ENOTEMPTY:
            raise RestoreError(f"{folder} still holds previous content; left as it is") from None
        raise
