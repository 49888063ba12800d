"""What a restore would change (its dry run), as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backupctl.render import text as fmt
from backupctl.render.text import path_list

EXAMPLE_PATHS = 10


def describe_restore_plan(plan: Mapping[str, Any], taken: float | None, now: float) -> str:
    written, replaced, removed, kept = (plan.get(change) or {} for change in ("written", "replaced", "removed", "kept"))
    pairs = [
        ("Snapshot", f"{plan.get('snapshot')}, taken {fmt.timestamp(taken)} ({fmt.relative_time(taken, now)})"),
        ("Targets", path_list(plan.get("targets") or [], "\n")),
        ("Written", f"{fmt.plural(written.get('count', 0), 'file')} missing now"),
        ("Replaced", f"{fmt.plural(replaced.get('count', 0), 'file')} changed since the snapshot"),
        ("Removed", f"{fmt.plural(removed.get('count', 0), 'file')} not in the snapshot"),
        ("Kept", f"{fmt.plural(kept.get('count', 0), 'item')} the snapshot excluded"),
        ("Unchanged", fmt.plural(plan.get("unchanged", 0), "file")),
        ("To write", fmt.human_size(plan.get("bytes"))),
        *(("Room", f"{fmt.human_size(room.get('free'))} free on {room.get('mount_point') or 'its file system'}"
                   + ("" if room.get("needed", 0) <= room.get("free", 0) else ": NOT ENOUGH, nothing will be restored"))
          for room in plan.get("space") or []),
    ]
    sections = [fmt.fields(pairs)]
    for title, changes in (("Files to replace", replaced), ("Files to remove", removed), ("Files kept", kept)):
        if changes.get("count"):
            sections.append(f"{title}:\n" + fmt.examples(changes.get("paths") or [], changes["count"], EXAMPLE_PATHS))
    return "\n".join(sections)
