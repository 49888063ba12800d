"""What a restore would change (its dry run), as text."""

from __future__ import annotations

from backupctl.records import RestorePlan
from backupctl.render import text as fmt
from backupctl.render.text import path_list

EXAMPLE_PATHS = 10


def describe_restore_plan(plan: RestorePlan, taken: float | None, now: float) -> str:
    pairs = [
        ("Snapshot", f"{plan.snapshot}, taken {fmt.timestamp(taken)} ({fmt.relative_time(taken, now)})"),
        ("Targets", path_list(plan.targets or [], "\n")),
        ("Written", f"{fmt.plural(plan.written.count, 'file')} missing now"),
        ("Replaced", f"{fmt.plural(plan.replaced.count, 'file')} changed since the snapshot"),
        ("Removed", f"{fmt.plural(plan.removed.count, 'file')} not in the snapshot"),
        ("Kept", f"{fmt.plural(plan.kept.count, 'item')} the snapshot excluded"),
        ("Unchanged", fmt.plural(plan.unchanged, "file")),
        ("To write", fmt.human_size(plan.bytes)),
        *(("Room", f"{fmt.human_size(room.free)} free on {room.mount_point or 'its file system'}"
                   + ("" if room.needed <= room.free else ": NOT ENOUGH, nothing will be restored"))
          for room in plan.space),
    ]
    sections = [fmt.fields(pairs)]
    for title, changes in (("Files to replace", plan.replaced), ("Files to remove", plan.removed),
                           ("Files kept", plan.kept)):
        if changes.count:
            sections.append(f"{title}:\n" + fmt.examples(changes.paths or [], changes.count, EXAMPLE_PATHS))
    return "\n".join(sections)
