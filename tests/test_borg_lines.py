from backupd.borg.lines import LineSplitter


def test_line_splitter_cuts_endless_lines_and_keeps_partial_ones() -> None:
    splitter = LineSplitter(max_line_bytes=8)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\nde") == ["abc"]
    assert splitter.feed(b"fghijklmnop") == ["defghijk"]
    assert splitter.flush() == ["lmnop"]
    assert splitter.flush() == []
