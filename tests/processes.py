"""Looking at processes through /proc, as a person with `ps` would."""

from __future__ import annotations

from pathlib import Path


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children_of(current))
    return tree


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def capabilities_of(pid: int | str) -> dict[str, int]:
    """The capability sets of a process (CapInh, CapPrm, CapEff, CapBnd, CapAmb) as bit masks."""
    return capabilities_in(Path(f"/proc/{pid}/status").read_text())


def capabilities_in(status: str) -> dict[str, int]:
    """The capability sets in the text of a /proc/<pid>/status file."""
    sets = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name.startswith("Cap"):
            sets[name] = int(value.strip(), 16)
    return sets
