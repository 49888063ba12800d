from backupd.borg.log_json import (
    ArchiveProgress,
    ListedItem,
    ListedItems,
    LogMessage,
    ProgressMessage,
    is_listed_item,
    parse_stderr_line,
)


def test_parse_borg_log_lines() -> None:
    assert parse_stderr_line(
        '{"type": "log_message", "time": 1.5, "message": "Repository /x does not exist.", '
        '"levelname": "ERROR", "name": "borg.archiver", "msgid": "Repository.DoesNotExist"}\n'
    ) == [LogMessage("ERROR", "borg.archiver", "Repository /x does not exist.", "Repository.DoesNotExist", 1.5)]
    assert parse_stderr_line(
        '{"original_size": 10, "compressed_size": 5, "deduplicated_size": 2, "nfiles": 1, "path": "a", '
        '"time": 2.0, "type": "archive_progress", "finished": false}'
    ) == [ArchiveProgress(10, 5, 2, 1, "a", False, 2.0)]
    assert parse_stderr_line('{"operation": 2, "msgid": "cache.commit", "type": "progress_message", "finished": true}') == [
        ProgressMessage(2, "cache.commit", None, True)
    ]
    assert parse_stderr_line("") == []


LISTED_LINE = (
    b'{"type": "log_message", "time": 1.5, "message": "home/\\"quoted\\" caf\xc3\xa9", '
    b'"levelname": "INFO", "name": "borg.output.list"}'
)


def test_a_list_line_is_known_by_its_bytes_and_read_only_when_asked() -> None:
    assert is_listed_item(LISTED_LINE)
    assert not is_listed_item(LISTED_LINE.replace(b'"INFO"', b'"WARNING"'))
    assert not is_listed_item(b'{"type": "archive_progress", "nfiles": 1}')
    item = ListedItem(LISTED_LINE, "utf-8", ("café",))
    assert item.path == 'home/"quoted" café'
    assert item.message == 'home/"quoted" [redacted]'


def test_listed_items_give_file_system_paths_however_borg_escaped_them() -> None:
    def line(message: bytes) -> bytes:
        return LISTED_LINE.replace(b'home/\\"quoted\\" caf\xc3\xa9', message)

    lines = (line(b"srv/plain.txt"), LISTED_LINE, line(b"srv/caf\\u00e9"), line(b"srv/bad\\udcff"))
    items = ListedItems(lines, "utf-8", ("plain",))
    assert list(items.paths()) == [b"srv/plain.txt", 'home/"quoted" café'.encode(), "srv/café".encode(), b"srv/bad\xff"]
    assert [item.message for item in items] == ["srv/[redacted].txt", 'home/"quoted" café', "srv/café", "srv/bad\\xff"]
    assert items.last.path == "srv/bad\udcff"


def test_log_levels_of_borg_messages() -> None:
    def at(level: str) -> LogMessage:
        return LogMessage(level, "borg.archiver", "m", None, None)

    assert [at(level).is_error for level in ("INFO", "WARNING", "ERROR", "CRITICAL")] == [False, False, True, True]
    assert [at(level).at_least_warning for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")] == [
        False, False, True, True, True,
    ]


def test_plain_text_glued_to_a_record_is_a_warning_of_its_own() -> None:
    assert parse_stderr_line('Enter passphrase: {"type": "log_message", "levelname": "INFO", "name": "borg", '
                             '"message": "hi"}') == [
        LogMessage("WARNING", "borg", "Enter passphrase: ", None, None),
        LogMessage("INFO", "borg", "hi", None, None),
    ]
