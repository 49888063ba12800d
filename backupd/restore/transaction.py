"""All-or-nothing replacement of files and folders by the content of a snapshot.

borg extracts each target into a staging folder on the target's own mount. `commit()` then
swaps the staged content into place with renames, keeping the previous content aside until
every target is swapped. A journal in the state folder, rewritten atomically before each
step, lets `recover()` bring every target back to one whole state after a crash: the
previous content when the swap had not finished, the snapshot's once it had.

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

import base64
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupd.restore.nofollow import (
    PRIVATE_FOLDER_MODE,
    Identity,
    components,
    deepest_existing,
    lstat,
    make_folder,
    move_children,
    opened_folder,
    opened_own_folder,
    remove_empty_folder,
    remove_folder_if_empty,
    remove_tree,
    rename,
    sync_folder,
    why_unwritable,
)
from backupd.borg.patterns import exclude_matcher
from backupd.paths import is_within, overlapping
from backupd.restore.staging_place import NoSafePlace, mount_points, require_safe, safe_folder_for
from backupd.store import PRIVATE_FILE_MODE, write_atomically

JOURNAL_VERSION = 1

# journal phases
STAGING = "staging"  # targets untouched; staging folders may hold extracted content
SWAPPING = "swapping"  # some targets may be swapped; undo puts the previous content back
COMMITTED = "committed"  # every target holds the snapshot's content; only clean-up is left

# how a target is swapped
BY_RENAME = "rename"
BY_CHILDREN = "children"

# the step of one target, journaled before it is taken
UNTOUCHED = "untouched"
MOVING_ASIDE = "moving_aside"
PLACING = "placing"

CREATED_PARENT_MODE = 0o755
_JOB_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_XATTRS_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP)


class RestoreError(Exception):
    """A restore cannot be prepared, committed or undone; the message says why for people."""


class NotInSnapshot(RestoreError):
    """borg extracted nothing for some targets: the snapshot does not hold them."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"the snapshot does not hold {', '.join(missing)}; nothing was restored")
        self.missing = missing


@dataclass(frozen=True)
class ExtractGroup:
    cwd: Path  # run `borg extract` with this working directory
    targets: tuple[str, ...]
    archive_paths: tuple[str, ...]  # what to extract for each target: borg creates cwd/<archive path>


@dataclass
class _FolderMetadata:
    """What a folder carries besides its entries."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    xattrs: dict[str, str]  # name -> base64 of the value


@dataclass
class _TargetPlan:
    path: str
    method: str
    staging: str  # the staging folder borg extracts into
    aside: str  # the folder that holds the previous content during the swap
    step: str = UNTOUCHED
    old_metadata: _FolderMetadata | None = None  # BY_CHILDREN: the target folder's own, before
    new_metadata: _FolderMetadata | None = None  # BY_CHILDREN: the staged folder's own
    aside_name: str | None = None  # BY_RENAME: its entry in the aside folder (default: its name)
    archive_path: str | None = None  # where it is in the snapshot (default: its path without "/")

    @property
    def in_archive(self) -> str:
        return self.archive_path or self.path.lstrip("/")

    @property
    def staged(self) -> str:
        return os.path.join(self.staging, self.in_archive)

    @property
    def aside_path(self) -> str:
        """BY_RENAME: where the previous content of the target is kept during the swap."""
        return os.path.join(self.aside, self.aside_name or os.path.basename(self.path))

    def document(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "staging": self.staging,
            "aside": self.aside,
            "aside_name": self.aside_name,
            "archive_path": self.archive_path,
            "step": self.step,
            "old_metadata": None if self.old_metadata is None else vars(self.old_metadata),
            "new_metadata": None if self.new_metadata is None else vars(self.new_metadata),
        }

    @property
    def own_folders(self) -> frozenset[str]:
        """BY_CHILDREN: the entries inside the target that belong to the restore."""
        return frozenset({os.path.basename(self.staging), os.path.basename(self.aside)})


@dataclass
class _Journal:
    path: Path
    job_id: str
    phase: str
    targets: list[_TargetPlan]
    created_folders: list[str] = field(default_factory=list)  # missing parents, outermost first
    made: dict[str, Identity] = field(default_factory=dict)  # folders the restore made
    # The snapshot's exclude patterns: what they match was never in it, and is kept.
    keep_excluded: list[str] = field(default_factory=list)
    removed: bool = False

    @property
    def staging_folders(self) -> list[str]:
        return list(dict.fromkeys(plan.staging for plan in self.targets))

    @property
    def aside_folders(self) -> list[str]:
        return list(dict.fromkeys(plan.aside for plan in self.targets))

    def document(self) -> dict[str, Any]:
        return {
            "version": JOURNAL_VERSION,
            "job_id": self.job_id,
            "phase": self.phase,
            "created_folders": self.created_folders,
            "made": {path: identity.document() for path, identity in self.made.items()},
            "keep_excluded": self.keep_excluded,
            "targets": [plan.document() for plan in self.targets],
        }

    def save(self) -> None:
        _write_atomically(self.path, self.document())

    def set_phase(self, phase: str) -> None:
        previous, self.phase = self.phase, phase
        try:
            self.save()
        except BaseException:
            self.phase = previous
            raise

    def set_step(self, plan: _TargetPlan, step: str) -> None:
        previous, plan.step = plan.step, step
        try:
            self.save()
        except BaseException:
            plan.step = previous
            raise

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        sync_folder(str(self.path.parent))
        self.removed = True

    @classmethod
    def load(cls, path: Path) -> _Journal | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise RestoreError(f"cannot read the restore journal {path}: {error}") from None
        try:
            return cls.from_document(path, json.loads(data))
        except (ValueError, KeyError, TypeError) as error:
            raise RestoreError(
                f"the restore journal {path} is unreadable ({error!r}); check the folders it names "
                "by hand, then remove it"
            ) from None

    @classmethod
    def from_document(cls, path: Path, document: dict[str, Any]) -> _Journal:
        if document["version"] != JOURNAL_VERSION:
            raise ValueError(f"unknown journal version {document['version']!r}")
        if document["phase"] not in (STAGING, SWAPPING, COMMITTED):
            raise ValueError(f"unknown phase {document['phase']!r}")
        return cls(
            path=path,
            job_id=str(document["job_id"]),
            phase=document["phase"],
            targets=[_plan_from_document(entry) for entry in document["targets"]],
            created_folders=[str(folder) for folder in document.get("created_folders", [])],
            made={str(path): Identity.from_document(identity)
                  for path, identity in document.get("made", {}).items()},
            keep_excluded=[str(pattern) for pattern in document.get("keep_excluded", [])],
        )


def _plan_from_document(entry: dict[str, Any]) -> _TargetPlan:
    if entry["method"] not in (BY_RENAME, BY_CHILDREN):
        raise ValueError(f"unknown method {entry['method']!r}")
    if entry["step"] not in (UNTOUCHED, MOVING_ASIDE, PLACING):
        raise ValueError(f"unknown step {entry['step']!r}")
    return _TargetPlan(
        path=entry["path"],
        method=entry["method"],
        staging=entry["staging"],
        aside=entry["aside"],
        step=entry["step"],
        old_metadata=_metadata_from_document(entry.get("old_metadata")),
        new_metadata=_metadata_from_document(entry.get("new_metadata")),
        aside_name=entry.get("aside_name"),
        archive_path=entry.get("archive_path"),
    )


def _metadata_from_document(entry: dict[str, Any] | None) -> _FolderMetadata | None:
    return None if entry is None else _FolderMetadata(**entry)


class RestoreTransaction:
    """One restore's swap of staged content into place; see the module's documentation."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._commit_started = False

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
        if not _JOB_ID.fullmatch(job_id):
            raise RestoreError(f"job id {job_id!r} cannot name a folder")
        if os.path.lexists(journal_path):
            raise RestoreError(
                f"an earlier restore left its journal {journal_path}; it is recovered when "
                "backupd starts"
            )
        paths = _validated_targets(targets, journal_path)
        _refuse_unfinished(paths, unfinished)
        unknown = set(swap_children) - set(paths)
        if unknown:
            raise RestoreError(f"not a target of this restore: {', '.join(sorted(unknown))}")
        try:
            journal = _plan(journal_path, job_id, paths, set(swap_children), archive_paths or {})
            journal.keep_excluded = list(keep_excluded)
        except NoSafePlace as error:
            raise RestoreError(f"cannot restore safely: {error}") from None
        except OSError as error:
            raise RestoreError(f"cannot prepare the restore: {_describe(error)}") from None
        journal_path.parent.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
        journal.save()
        try:
            _create_folders(journal)
        except OSError as error:
            _roll_back(journal)
            raise RestoreError(f"cannot prepare the restore: {_describe(error)}") from None
        return cls(journal)

    def extract_groups(self) -> list[ExtractGroup]:
        groups: dict[str, list[_TargetPlan]] = {}
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
            raise RestoreError(f"cannot open the staging folder: {_describe(error)}") from None

    def staged_path(self, target: str) -> Path:
        return Path(self._plan_of(target).staged)

    def commit(self) -> None:
        """Swap every target (phase "swapping", each step journaled before it is taken: the
        target renamed aside to `.backupd-previous-<job_id>/...`, the staged content renamed
        into place), then phase "committed", then delete the previous content and the staging
        folders and remove the journal. Nothing is swapped unless the snapshot held every
        target. If a step fails, the steps done so far are undone and RestoreError is raised.
        After any RestoreError, abort() deletes whatever is left."""
        self.swap_into_place()
        self.clean_up()

    def swap_into_place(self) -> None:
        """The first half of commit(): after it, every target holds the snapshot's content and
        the journal says so; the previous content still waits aside for clean_up()."""
        if self._commit_started or self._journal.removed:
            raise RestoreError("this restore was already committed or aborted")
        self._commit_started = True
        journal = self._journal
        _check_staged_content(journal)
        try:
            journal.set_phase(SWAPPING)
            for plan in journal.targets:
                _swap(journal, plan)
            journal.set_phase(COMMITTED)
        except BaseException as failure:
            self._undo_after(failure)
            raise

    def clean_up(self) -> None:
        """The second half of commit(): delete the previous content and the staging folders,
        and remove the journal. A crash before it ends is finished by recover()."""
        journal = self._journal
        try:
            _finish(journal)
        except OSError as error:
            raise RestoreError(
                f"the snapshot's content is in place, but cleaning up failed: {_describe(error)}; "
                "the clean-up is tried again when backupd starts"
            ) from None

    def abort(self) -> None:
        """Undo any swap done, delete the staging folders, remove the journal. Idempotent.
        After a commit whose clean-up failed, finish that clean-up instead."""
        journal = self._journal
        if journal.removed:
            return
        try:
            if journal.phase == COMMITTED:
                _finish(journal)
            else:
                _roll_back(journal)
        except OSError as error:
            raise RestoreError(f"cannot undo the restore: {_describe(error)}") from None

    def _plan_of(self, target: str) -> _TargetPlan:
        for plan in self._journal.targets:
            if plan.path == target:
                return plan
        raise RestoreError(f"{target} is not a target of this restore")

    def _undo_after(self, failure: BaseException) -> None:
        reason = _describe(failure)
        try:
            _roll_back(self._journal)
        except (OSError, RestoreError) as undo_error:
            if self._journal.phase == STAGING:
                raise RestoreError(
                    f"the restore failed ({reason}); the previous content is back in place, but "
                    f"deleting the staging folders failed: {_describe(undo_error)}"
                ) from failure
            raise RestoreError(
                f"the restore failed ({reason}), and undoing it failed too: {_describe(undo_error)}"
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
    _remove_temporary_files(journal_path)
    journal = _Journal.load(journal_path)
    if journal is None:
        return None
    count = _count(len(journal.targets), "target")
    phase = journal.phase
    try:
        if phase == COMMITTED:
            _finish(journal)
        else:
            _roll_back(journal)
    except OSError as error:
        raise RestoreError(
            f"cannot recover the interrupted restore {journal.job_id}: {_describe(error)}"
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


# --- preparing -------------------------------------------------------------------------------


def _validated_targets(targets: Sequence[str], journal_path: Path) -> list[str]:
    if isinstance(targets, str):
        raise RestoreError("the targets must be a list of paths, not one string")
    if not targets:
        raise RestoreError("nothing to restore: no target paths")
    paths = list(targets)
    for path in paths:
        if not _is_clean_absolute_path(path):
            raise RestoreError(f"{path!r} is not an absolute, normalised path below /")
    overlap = overlapping(paths)
    if overlap is not None:
        outer, inner = overlap
        if inner == outer:
            raise RestoreError(f"{outer} is listed twice")
        raise RestoreError(f"{inner} is inside {outer}; list only {outer}")
    journal_folder = os.path.abspath(journal_path.parent)
    for path in paths:
        if is_within(journal_folder, path):
            raise RestoreError(
                f"{path} holds backupd's own state folder; it cannot be restored in place"
            )
        if os.path.basename(path).startswith((".backupd-restore-", ".backupd-previous-")):
            raise RestoreError(f"{path} is a folder of an earlier restore, not data")
    return paths


def _refuse_unfinished(paths: list[str], unfinished: Collection[Path]) -> None:
    """An earlier restore that could not be undone holds its targets until a person looks;
    the rest of the box can still be restored."""
    for journal_path in unfinished:
        try:
            journal = _Journal.load(journal_path)
        except RestoreError as error:
            raise RestoreError(f"{error}; no restore can start until then") from None
        if journal is None:
            continue
        held = [plan.path for plan in journal.targets]
        overlap = [path for path in paths if any(is_within(path, other) or is_within(other, path) for other in held)]
        if overlap:
            raise RestoreError(
                f"restore {journal.job_id} was interrupted and could not be undone, and it holds "
                f"{', '.join(overlap)}: look at {', '.join(held)} and the folders its journal "
                f"{journal_path} names, then restart backupd"
            )


def _is_clean_absolute_path(path: object) -> bool:
    return (
        isinstance(path, str)
        and path.startswith("/")
        and not path.startswith("//")
        and path != "/"
        and "\0" not in path
        and os.path.normpath(path) == path
    )


def _plan(journal_path: Path, job_id: str, paths: list[str], swap_children: set[str],
          archive_paths: Mapping[str, str]) -> _Journal:
    points = mount_points()
    created_folders: list[str] = []
    plans: list[_TargetPlan] = []
    for index, path in enumerate(paths):
        for folder in _missing_parents(path):
            if folder not in created_folders:
                created_folders.append(folder)
        by_children = path in swap_children or _is_mount_point(path, points)
        plan = _plan_target(path, job_id, by_children, index)
        plan.archive_path = archive_paths.get(path)
        plans.append(plan)
    journal = _Journal(journal_path, job_id, STAGING, plans, created_folders)
    for folder in journal.staging_folders + journal.aside_folders:
        if lstat(folder) is not None:
            raise RestoreError(
                f"{folder} already exists; remove what an earlier restore left there"
            )
    _refuse_unwritable(journal)
    return journal


def _refuse_unwritable(journal: _Journal) -> None:
    """Every folder the restore will create entries in can take them, before anything is
    extracted: the staging places, and where each target goes (or its deepest existing
    ancestor, where missing parents will be made)."""
    folders: list[str] = []
    for plan in journal.targets:
        folders.append(os.path.dirname(plan.staging))
        folders.append(deepest_existing(plan.path if plan.method == BY_CHILDREN else os.path.dirname(plan.path)))
    for folder in dict.fromkeys(folders):
        reason = why_unwritable(folder)
        if reason is not None:
            raise RestoreError(f"nothing was restored: {reason}")


def _missing_parents(path: str) -> list[str]:
    """The parent folders of path that do not exist yet, outermost first; refuses a parent
    that is a symbolic link or not a folder."""
    missing: list[str] = []
    current = "/"
    for name in components(os.path.dirname(path)):
        current = os.path.join(current, name)
        if missing:
            missing.append(current)
            continue
        info = lstat(current)
        if info is None:
            missing.append(current)
        elif stat.S_ISLNK(info.st_mode):
            raise RestoreError(
                f"cannot restore {path}: {current} is a symbolic link; name the real folder instead"
            )
        elif not stat.S_ISDIR(info.st_mode):
            raise RestoreError(f"cannot restore {path}: {current} is not a folder")
    return missing


def _plan_target(path: str, job_id: str, by_children: bool, index: int) -> _TargetPlan:
    staging_name = f".backupd-restore-{job_id}"
    aside_name = f".backupd-previous-{job_id}"
    if not by_children:
        place = safe_folder_for(os.path.dirname(path))
        return _TargetPlan(
            path, BY_RENAME, os.path.join(place, staging_name), os.path.join(place, aside_name),
            aside_name=f"{index}.{os.path.basename(path)}",
        )
    info = lstat(path)
    if info is None or not stat.S_ISDIR(info.st_mode):
        raise RestoreError(
            f"{path} cannot be renamed (it is a mount point) and is not a folder whose content "
            "could be replaced instead"
        )
    require_safe(path)
    return _TargetPlan(
        path,
        BY_CHILDREN,
        os.path.join(path, staging_name),
        os.path.join(path, aside_name),
        old_metadata=_read_metadata(path),
    )


def _is_mount_point(path: str, points: set[str]) -> bool:
    info = lstat(path)
    if info is None or stat.S_ISLNK(info.st_mode):
        return False
    parent = lstat(os.path.dirname(path))
    return path in points or (parent is not None and parent.st_dev != info.st_dev)






def _create_folders(journal: _Journal) -> None:
    for folder in journal.created_folders:
        journal.made[folder] = make_folder(folder, CREATED_PARENT_MODE)
    for folder in journal.staging_folders:
        journal.made[folder] = make_folder(folder, PRIVATE_FOLDER_MODE)
    journal.save()


def _make_aside_folder(journal: _Journal, folder: str) -> None:
    if folder not in journal.made and lstat(folder) is None:
        journal.made[folder] = make_folder(folder, PRIVATE_FOLDER_MODE)


# --- swapping --------------------------------------------------------------------------------


def _check_staged_content(journal: _Journal) -> None:
    for folder in journal.staging_folders:
        try:
            with opened_own_folder(folder, journal.made.get(folder)):
                pass
        except OSError as error:
            raise RestoreError(f"cannot use the staging folder: {_describe(error)}") from None
    missing: list[str] = []
    for plan in journal.targets:
        try:
            info = lstat(plan.staged)
        except OSError as error:
            raise RestoreError(
                f"cannot look at the extracted copy of {plan.path}: {_describe(error)}"
            ) from None
        if info is None:
            missing.append(plan.path)
            continue
        if plan.method == BY_CHILDREN and not stat.S_ISDIR(info.st_mode):
            raise RestoreError(
                f"{plan.path} is a mount point, so only a folder can be restored there, but the "
                "snapshot holds something else; nothing was restored"
            )
    if missing:
        raise NotInSnapshot(missing)


def _swap(journal: _Journal, plan: _TargetPlan) -> None:
    if plan.method == BY_RENAME:
        _swap_by_rename(journal, plan)
    else:
        _swap_children(journal, plan)


def _swap_by_rename(journal: _Journal, plan: _TargetPlan) -> None:
    _make_aside_folder(journal, plan.aside)
    if lstat(plan.path) is not None:
        journal.set_step(plan, MOVING_ASIDE)
        try:
            rename(plan.path, plan.aside_path)
        except OSError as error:
            if error.errno in (errno.EXDEV, errno.EBUSY):
                # The staged copy lies beside the target, on the parent's filesystem: only a
                # new prepare() can stage inside the target and swap its children instead.
                raise RestoreError(
                    f"{plan.path} cannot be renamed ({error.strerror}); it became a mount point "
                    "after the restore was prepared. Start the restore again"
                ) from None
            raise
    journal.set_step(plan, PLACING)
    rename(plan.staged, plan.path)


def _swap_children(journal: _Journal, plan: _TargetPlan) -> None:
    plan.new_metadata = _read_metadata(plan.staged)
    _make_aside_folder(journal, plan.aside)
    journal.set_step(plan, MOVING_ASIDE)
    _refuse_conflicts(move_children(plan.path, plan.aside, skip=plan.own_folders), plan.aside)
    journal.set_step(plan, PLACING)
    _refuse_conflicts(move_children(plan.staged, plan.path), plan.path)


def _refuse_conflicts(conflicts: list[str], destination: str) -> None:
    if conflicts:
        raise RestoreError(
            f"{_count(len(conflicts), 'entry')} appeared in {destination} during the restore "
            f"(first: {conflicts[0]})"
        )


# --- finishing and undoing -------------------------------------------------------------------


def _finish(journal: _Journal) -> None:
    if journal.keep_excluded:
        _keep_excluded(journal)
    for folder in journal.aside_folders + journal.staging_folders:
        remove_tree(folder, journal.made.get(folder))
    for plan in journal.targets:
        if plan.method == BY_CHILDREN and plan.new_metadata is not None:
            _apply_metadata_if_present(plan.path, plan.new_metadata)
    journal.remove()


def _keep_excluded(journal: _Journal) -> None:
    """Before the previous content is deleted, move back into place what the snapshot's
    exclude patterns match: it was never in the snapshot, so the snapshot's copy cannot
    replace it. Done again, from where it stopped, when a crash interrupted it."""
    excluded = exclude_matcher(journal.keep_excluded)
    for plan in journal.targets:
        previous = plan.aside_path if plan.method == BY_RENAME else plan.aside
        info = lstat(previous)
        if info is not None and stat.S_ISDIR(info.st_mode):
            _move_back_excluded(previous, plan.path, plan.in_archive, excluded, lambda: None)


def _move_back_excluded(previous: str, place: str, archive_path: str, excluded: Callable[[str], bool],
                        ensure_parent: Callable[[], None]) -> None:
    with opened_folder(previous) as fd:
        names = sorted(os.listdir(fd))
        folder_info = os.fstat(fd)

    def ensure_place() -> None:
        ensure_parent()
        _ensure_folder_like(place, folder_info)

    for name in names:
        path_in_archive = f"{archive_path}/{name}"
        entry = lstat(os.path.join(previous, name))
        if entry is None:
            continue
        if excluded(path_in_archive):
            ensure_place()
            rename(os.path.join(previous, name), os.path.join(place, name))
        elif stat.S_ISDIR(entry.st_mode):
            _move_back_excluded(os.path.join(previous, name), os.path.join(place, name), path_in_archive,
                                excluded, ensure_place)


def _ensure_folder_like(path: str, like: os.stat_result) -> None:
    """A folder the snapshot no longer has, made again to hold what it excluded."""
    if lstat(path) is not None:
        return
    make_folder(path, stat.S_IMODE(like.st_mode))
    with opened_folder(path) as fd:
        os.chown(fd, like.st_uid, like.st_gid)


def _roll_back(journal: _Journal) -> None:
    """Put the previous content back where a swap started, then delete what the restore
    created. Raises RestoreError, keeping the journal, when something else took a place the
    previous content must go back to."""
    if journal.phase == SWAPPING:
        undone = [_undo(journal, plan) for plan in reversed(journal.targets)]
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
            _apply_metadata_if_present(plan.path, plan.old_metadata)
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


def _undo(journal: _Journal, plan: _TargetPlan) -> str | None:
    """Take back the steps of one target, latest first, whether or not the latest was taken,
    journaling each step taken back; what stands in the way, if anything does."""
    take_back = _take_back_rename if plan.method == BY_RENAME else _take_back_children
    while plan.step != UNTOUCHED:
        conflict = take_back(plan)
        if conflict is not None:
            return conflict
        journal.set_step(plan, MOVING_ASIDE if plan.step == PLACING else UNTOUCHED)
    return None


def _take_back_rename(plan: _TargetPlan) -> str | None:
    if plan.step == PLACING:
        if lstat(plan.path) is not None and lstat(plan.staged) is None:
            rename(plan.path, plan.staged)
        return None
    if lstat(plan.aside_path) is None:
        return None
    if lstat(plan.path) is not None:
        return f"{plan.path} is in the way of its previous content, kept at {plan.aside_path}"
    rename(plan.aside_path, plan.path)
    return None


def _take_back_children(plan: _TargetPlan) -> str | None:
    # While placing, the target holds only staged children, while moving aside only previous
    # ones: a step is taken back by moving every child of one folder, journaled as a whole.
    if plan.step == PLACING:
        source, destination, skip = plan.path, plan.staged, plan.own_folders
    elif lstat(plan.aside) is not None:
        source, destination, skip = plan.aside, plan.path, frozenset()
    else:
        return None
    in_the_way = move_children(source, destination, skip=skip)
    if in_the_way:
        return (
            f"{_count(len(in_the_way), 'entry')} of {source} cannot go back to {destination} "
            f"(first: {in_the_way[0]}); the previous content is in {plan.aside}"
        )
    return None


# --- metadata of a folder whose children were swapped ----------------------------------------


def _read_metadata(path: str) -> _FolderMetadata:
    with opened_folder(path) as fd:
        info = os.fstat(fd)
        return _FolderMetadata(
            mode=stat.S_IMODE(info.st_mode),
            uid=info.st_uid,
            gid=info.st_gid,
            atime_ns=info.st_atime_ns,
            mtime_ns=info.st_mtime_ns,
            xattrs=_read_xattrs(fd),
        )


def _read_xattrs(fd: int) -> dict[str, str]:
    try:
        names = os.listxattr(fd)
    except OSError as error:
        if error.errno in _XATTRS_UNSUPPORTED:
            return {}
        raise
    return {name: base64.b64encode(os.getxattr(fd, name)).decode("ascii") for name in names}


def _apply_metadata_if_present(path: str, metadata: _FolderMetadata) -> None:
    if lstat(path) is not None:
        _apply_metadata(path, metadata)


def _apply_metadata(path: str, metadata: _FolderMetadata) -> None:
    with opened_folder(path) as fd:
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (metadata.uid, metadata.gid):
            os.chown(fd, metadata.uid, metadata.gid)
        os.chmod(fd, metadata.mode)
        _replace_xattrs(fd, metadata.xattrs)
        os.utime(fd, ns=(metadata.atime_ns, metadata.mtime_ns))
        os.fsync(fd)


def _replace_xattrs(fd: int, wanted: dict[str, str]) -> None:
    # Extended attributes are metadata, not content: one the filesystem or the kernel's
    # security module refuses to change must not make the whole restore fail.
    try:
        current = os.listxattr(fd)
    except OSError as error:
        if error.errno in _XATTRS_UNSUPPORTED:
            return
        raise
    for name in current:
        if name not in wanted:
            _ignore_refusal(lambda: os.removexattr(fd, name))
    for name, value in wanted.items():
        _ignore_refusal(lambda: os.setxattr(fd, name, base64.b64decode(value)))


def _ignore_refusal(change: Callable[[], None]) -> None:
    try:
        change()
    except OSError as error:
        if error.errno not in (*_XATTRS_UNSUPPORTED, errno.EPERM, errno.EACCES):
            raise


# --- the journal file ------------------------------------------------------------------------


def _write_atomically(path: Path, document: Any) -> None:
    write_atomically(path, json.dumps(document, separators=(",", ":")).encode("utf-8"), PRIVATE_FILE_MODE)
    sync_folder(str(path.parent))


def _remove_temporary_files(journal_path: Path) -> None:
    for temporary in journal_path.parent.glob(f".{journal_path.name}.*.tmp"):
        temporary.unlink(missing_ok=True)




# --- words -----------------------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename2 is not None:
        return f"cannot move {error.filename} to {error.filename2}: {error.strerror}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


def _count(number: int, noun: str) -> str:
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"
