import pytest

from backupctl.records import Progress
from backupctl.render.progress import progress_bar, progress_line
from backupctl.render.text import duration, fields, human_size, relative_time, table

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024**2, "10.0 MiB"),
        (int(1.2 * 1024**3), "1.2 GiB"),
        (3 * 1024**4, "3.0 TiB"),
        (1024**2 - 1, "1.0 MiB"),
        (-2048, "-2.0 KiB"),
        (None, "-"),
    ],
)
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds_ago", "text"),
    [
        (0, "just now"),
        (4, "just now"),
        (30, "30 seconds ago"),
        (60, "1 minute ago"),
        (150, "2 minutes ago"),
        (2 * 3600 + 59, "2 hours ago"),
        (3600, "1 hour ago"),
        (86400 * 1.5, "1 day ago"),
        (86400 * 45, "45 days ago"),
        (86400 * 90, "3 months ago"),
        (86400 * 800, "2 years ago"),
        (-300, "in 5 minutes"),
        (-1, "just now"),
    ],
)
def test_relative_time(seconds_ago, text):
    assert relative_time(NOW - seconds_ago, NOW) == text


def test_relative_time_of_unknown_moment():
    assert relative_time(None, NOW) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.3, "0.3 s"),
        (9.94, "9.9 s"),
        (42, "42 s"),
        (185, "3 min 5 s"),
        (180, "3 min"),
        (2 * 3600 + 300, "2 h 5 min"),
        (3 * 86400 + 4 * 3600, "3 d 4 h"),
        (-1, "0.0 s"),
        (None, "-"),
    ],
)
def test_duration(seconds, text):
    assert duration(seconds) == text


SNAPSHOT_PROGRESS = {
    "files": 1234,
    "original_size": int(1.2 * 1024**3),
    "deduplicated_size": 300 * 1024**2,
    "path": "srv/data/photos/2023/holiday/img_0042.jpg",
    "elapsed": 12.0,
    "percent": 42.0,
    "eta": 17.0,
}


def test_progress_line_shows_every_known_field():
    line = progress_line(SNAPSHOT_PROGRESS)
    assert line == (
        "[########------------]  42.0%  ETA 17 s  1,234 files  1.2 GiB read  300.0 MiB new  "
        "srv/data/photos/2023/holiday/img_0042.jpg"
    )


def test_progress_line_without_estimate_has_no_bar():
    progress = dict(SNAPSHOT_PROGRESS, percent=None, eta=None, path=None)
    assert progress_line(progress) == "1,234 files  1.2 GiB read  300.0 MiB new"


def test_progress_line_shortens_the_path_from_the_left_to_fit():
    line = progress_line(SNAPSHOT_PROGRESS, width=110)
    assert len(line) == 110
    assert "  ..." in line
    assert line.endswith("/holiday/img_0042.jpg")


def test_progress_line_drops_the_path_when_there_is_no_room():
    line = progress_line(SNAPSHOT_PROGRESS, width=80)
    assert len(line) <= 80
    assert "img_0042" not in line
    assert line.startswith("[########")


def test_progress_line_of_a_step():
    assert progress_line({"step": "connecting", "repository": "/srv/repo"}) == "connecting"


def test_progress_line_of_nothing_is_empty():
    assert progress_line({}) == ""
    assert progress_line(None) == ""


def test_progress_of_a_newer_daemon_shows_what_this_client_knows():
    assert progress_line(Progress.from_wire({"files": 3, "read_ahead": 1.0})) == "3 files"


def test_progress_bar_is_clamped():
    assert progress_bar(0, 10) == "[----------]"
    assert progress_bar(55, 10) == "[#####-----]"
    assert progress_bar(150, 10) == "[##########]"


def test_table_aligns_columns():
    text = table(("ID", "STATE"), [("1", "succeeded"), ("12", "failed")])
    assert text.splitlines() == ["ID  STATE", "1   succeeded", "12  failed"]


def test_fields_align_values_and_indent_further_lines():
    text = fields([("State", "idle"), ("Last snapshot", "2 hours ago\nbox-1")])
    assert text.splitlines() == [
        "State:         idle",
        "Last snapshot: 2 hours ago",
        "               box-1",
    ]


def test_times_name_their_zone(monkeypatch):
    import time

    from backupctl.render import text as fmt

    monkeypatch.setenv("TZ", "Europe/Lisbon")
    time.tzset()
    try:
        assert fmt.timestamp(1780000000) == "2026-05-28 21:26:40 WEST"
        assert fmt.clock(1780000000) == "21:26:40 WEST"
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert fmt.timestamp(1780000000) == "2026-05-28 20:26:40 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()
