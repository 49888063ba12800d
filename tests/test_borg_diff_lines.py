import json

from backupd.borg.diff_lines import DiffChange, diff_changes


def test_diff_records_split_anywhere_read_into_changes() -> None:
    records = [
        {"path": "srv/new.txt", "changes": [{"type": "added", "size": 12}]},
        {"path": "srv/old", "changes": [{"type": "removed directory"}]},
        {"path": "srv/doc", "changes": [{"type": "modified", "added": 5, "removed": 3},
                                        {"type": "mode", "old_mode": "-rw-r--r--", "new_mode": "-rw-------"}]},
        {"path": "srv/link", "changes": [{"type": "changed link"}]},
        {"path": "srv/touched", "changes": [{"type": "ctime"}]},
    ]
    output = b"".join(json.dumps(record).encode() + b"\n" for record in records) + b"not json\n[1]\n"
    chunks = [output[start:start + 7] for start in range(0, len(output), 7)]
    assert list(diff_changes(chunks)) == [
        DiffChange("srv/new.txt", "added", "file", size=12),
        DiffChange("srv/old", "removed", "folder"),
        DiffChange("srv/doc", "modified", "file", what=("content", "mode"),
                   details={"added_bytes": 5, "removed_bytes": 3}),
        DiffChange("srv/link", "modified", "link", what=("link",)),
    ]


def test_a_last_line_without_its_end_is_read() -> None:
    assert list(diff_changes([b'{"path": "a", "changes": [{"type": "removed", "size": 4}]}'])) == [
        DiffChange("a", "removed", "file", old_size=4),
    ]
