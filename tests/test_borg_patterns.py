"""The daemon's exclude matching against borg's own, on tables and on generated paths."""

from __future__ import annotations

import re

import pytest
from borg.patterns import FnmatchPattern, parse_pattern
from hypothesis import given, settings
from hypothesis import strategies as st

from backupd.borg.patterns import exclude_matcher

PATTERNS = [
    "*.big", "fm:*.big", "srv/data/cache", "/srv/data/cache", "/srv/data/cache/", "sh:**/*.tmp",
    "sh:/srv/*/cache", "sh:srv/data/[!a]*", "sh:srv/data/[^a]*", "sh:srv/**/x?", "fm:srv/data/[ab]*",
    "re:^srv/data/.*\\.log$", "re:cache", "pp:/srv/data/cache", "pp:srv/data", "pf:/srv/data/a.big",
    "pf:srv/data", "sh:srv/data/", "fm:*/cache/*", "sh:*", "sh:[",
]
PATHS = [
    "srv", "srv/data", "srv/data/a.big", "srv/data/cache", "srv/data/cache/x", "srv/data/cache2",
    "srv/data/b.tmp", "srv/other/cache", "srv/other/cache/y", "srv/data/x.log", "srv/data/sub/x1",
    "srv/data/a", "srv/data/b", "srv/data/^x", "[", "srv/data/sub/deep/x2",
]


def borg_matches(pattern: str, path: str) -> bool:
    return parse_pattern(pattern, fallback=FnmatchPattern).match(path)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_pattern_matches_what_borg_matches(pattern: str) -> None:
    matches = exclude_matcher([pattern])
    assert [path for path in PATHS if matches(path)] == [path for path in PATHS if borg_matches(pattern, path)]


path_part = st.text(alphabet="abc.*?[]!^-_x", min_size=1, max_size=4).filter(lambda part: part not in (".", ".."))
paths = st.lists(path_part, min_size=1, max_size=4).map("/".join)
styles = st.sampled_from(["", "fm:", "sh:", "pp:", "pf:"])


@settings(max_examples=300, deadline=None)
@given(styles, paths, paths)
def test_generated_globs_and_paths_agree_with_borg(style: str, pattern: str, path: str) -> None:
    try:
        borg_pattern = parse_pattern(style + pattern, fallback=FnmatchPattern)
    except re.error:
        # borg cannot read it (a class like [?-/]): configure refuses it rather than every snapshot failing
        with pytest.raises(ValueError):
            exclude_matcher([style + pattern])
        return
    matches = exclude_matcher([style + pattern])
    assert matches(path) == borg_pattern.match(path)


def test_a_shell_pattern_borg_cannot_read_is_refused_at_configure() -> None:
    from backupd.borg.grammar import check_exclude

    with pytest.raises(ValueError, match="not a shell pattern borg can read"):
        check_exclude("sh:/srv/[z-a]")
    with pytest.raises(re.error):
        parse_pattern("sh:/srv/[z-a]", fallback=FnmatchPattern)
