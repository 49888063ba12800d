"""Where an archive made by hand belongs: its roots from its items, placed by its command line."""

from backupd.browse.index import RootFinder
from backupd.restore.archive_roots import locate


def test_roots_are_the_items_no_other_item_holds():
    items = ["srv/data", "srv/data/a", "srv/data/b/c", "etc/app.conf", "srv/database", "srv/database/x"]
    roots = RootFinder()
    for item in items:
        roots.add(item)
    assert roots.roots == ["srv/data", "etc/app.conf", "srv/database"]


def test_an_absolute_source_with_an_exclude_given_as_two_words():
    command_line = ["borg", "create", "--exclude", "/srv/data/cache", "/r::x", "/srv/data", "/etc/app.conf"]
    assert locate(["srv/data", "etc/app.conf"], command_line, "/root") == {
        "/srv/data": "srv/data", "/etc/app.conf": "etc/app.conf"}


def test_a_relative_source_goes_where_borg_ran():
    command_line = ["borg", "create", "/r::x", "data", "./photos/"]
    assert locate(["data", "photos"], command_line, "/home/u") == {
        "/home/u/data": "data", "/home/u/photos": "photos"}


def test_without_a_command_line_a_root_is_taken_as_absolute():
    assert locate(["srv/data"], [], "") == {"/srv/data": "srv/data"}
