"""A restore's journal: its plan for each target and how far the swap went, rewritten
atomically (and the folder synced) before each step, so that after a crash every target can
be brought back to one whole state. One journal per restore, `restores/<job>.json` in the
state folder, until the restore is finished or undone."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupd.private_files import write_atomically
from backupd.restore.errors import RestoreError
from backupd.restore.folder_metadata import FolderMetadata
from backupd.restore.nofollow import Identity, sync_folder
from backupd.store import PRIVATE_FILE_MODE

JOURNAL_VERSION = 1
JOURNAL_FOLDER = "restores"
# Where daemons before the journal folder kept their one journal: still recovered at start.
LEGACY_JOURNAL = "restore-journal.json"

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


def journal_path(state_dir: Path, job_id: str) -> Path:
    return state_dir / JOURNAL_FOLDER / f"{job_id}.json"


def unfinished_journals(state_dir: Path) -> list[Path]:
    """The journals of restores that are not finished: running, or interrupted and not undone."""
    legacy = state_dir / LEGACY_JOURNAL
    return sorted((state_dir / JOURNAL_FOLDER).glob("*.json")) + ([legacy] if legacy.exists() else [])


@dataclass
class TargetPlan:
    path: str
    method: str
    staging: str  # the staging folder borg extracts into
    aside: str  # the folder that holds the previous content during the swap
    step: str = UNTOUCHED
    old_metadata: FolderMetadata | None = None  # BY_CHILDREN: the target folder's own, before
    new_metadata: FolderMetadata | None = None  # BY_CHILDREN: the staged folder's own
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

    @classmethod
    def from_document(cls, entry: dict[str, Any]) -> TargetPlan:
        if entry["method"] not in (BY_RENAME, BY_CHILDREN):
            raise ValueError(f"unknown method {entry['method']!r}")
        if entry["step"] not in (UNTOUCHED, MOVING_ASIDE, PLACING):
            raise ValueError(f"unknown step {entry['step']!r}")
        return cls(
            path=entry["path"],
            method=entry["method"],
            staging=entry["staging"],
            aside=entry["aside"],
            step=entry["step"],
            old_metadata=FolderMetadata.from_document(entry.get("old_metadata")),
            new_metadata=FolderMetadata.from_document(entry.get("new_metadata")),
            aside_name=entry.get("aside_name"),
            archive_path=entry.get("archive_path"),
        )

    @property
    def own_folders(self) -> frozenset[str]:
        """BY_CHILDREN: the entries inside the target that belong to the restore."""
        return frozenset({os.path.basename(self.staging), os.path.basename(self.aside)})


@dataclass
class Journal:
    path: Path
    job_id: str
    phase: str
    targets: list[TargetPlan]
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
        write_atomically(self.path, json.dumps(self.document(), separators=(",", ":")).encode("utf-8"),
                         PRIVATE_FILE_MODE)
        sync_folder(str(self.path.parent))

    def set_phase(self, phase: str) -> None:
        previous, self.phase = self.phase, phase
        try:
            self.save()
        except BaseException:
            self.phase = previous
            raise

    def set_step(self, plan: TargetPlan, step: str) -> None:
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
    def load(cls, path: Path) -> Journal | None:
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
    def from_document(cls, path: Path, document: dict[str, Any]) -> Journal:
        if document["version"] != JOURNAL_VERSION:
            raise ValueError(f"unknown journal version {document['version']!r}")
        if document["phase"] not in (STAGING, SWAPPING, COMMITTED):
            raise ValueError(f"unknown phase {document['phase']!r}")
        return cls(
            path=path,
            job_id=str(document["job_id"]),
            phase=document["phase"],
            targets=[TargetPlan.from_document(entry) for entry in document["targets"]],
            created_folders=[str(folder) for folder in document.get("created_folders", [])],
            made={str(path): identity for path, entry in document.get("made", {}).items()
                  if (identity := Identity.from_document(entry)) is not None},
            keep_excluded=[str(pattern) for pattern in document.get("keep_excluded", [])],
        )


def remove_temporary_files(journal_path: Path) -> None:
    """What a crash left of a journal being rewritten."""
    for temporary in journal_path.parent.glob(f".{journal_path.name}.*.tmp"):
        temporary.unlink(missing_ok=True)
