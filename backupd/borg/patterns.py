"""Which archive paths borg's `--exclude` patterns match, the way borg 1.4 matches them
(`borg.patterns`): `fm:` (the default) and `sh:` globs, `re:` expressions, `pp:` prefixes and
`pf:` full paths. Archive paths have no leading "/". The tests hold this against borg's own
matcher.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Sequence

from backupd.borg.grammar import check_exclude, shell_regex, split_style

Matcher = Callable[[str], bool]


def exclude_matcher(patterns: Sequence[str]) -> Matcher:
    """Whether any of the patterns excludes an archive path."""
    matchers = [_matcher(pattern) for pattern in patterns]
    return lambda path: any(match(path) for match in matchers)


def _matcher(pattern: str) -> Matcher:
    check_exclude(pattern)
    style, body = split_style(pattern)
    if style == "re":
        expression = re.compile(body)
        return lambda path: expression.search(path) is not None
    if style == "pf":
        full = os.path.normpath(body).lstrip("/")
        return lambda path: path == full
    if style == "pp":
        prefix = (os.path.normpath(body).rstrip("/") + "/").lstrip("/")
        return lambda path: (path + "/").startswith(prefix)
    if style == "sh":
        expression = re.compile(shell_regex(_with_contents(body, "**/*")))
    else:
        expression = re.compile(fnmatch.translate(_with_contents(body, "*")))
    return lambda path: expression.match(path + "/") is not None


def _with_contents(body: str, everything: str) -> str:
    """A glob matches what it names and everything below it; with a trailing "/", only what
    is below."""
    if body.endswith("/"):
        return (os.path.normpath(body).rstrip("/") + "/" + everything + "/").lstrip("/")
    return (os.path.normpath(body) + "/" + everything).lstrip("/")
