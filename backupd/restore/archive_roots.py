"""Where the contents of an archive the daemon did not make belong on the box.

borg stores an absolute path without its leading "/" (`/srv/data` as `srv/data`) and a
relative one as given, relative to the folder borg ran in (`cwd` in `borg info`). What an
archive holds is read from its items: its roots are the items whose parent is not an item.
The command line only tells whether a root was named by an absolute path or a relative one;
an option's value (`--exclude /srv/data/cache`) names no root, since it has no items.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def excludes_in(command_line: Sequence[str]) -> tuple[str, ...]:
    """The `--exclude` patterns of a `borg create` command line, in any of argparse's forms."""
    patterns: list[str] = []
    for index, argument in enumerate(command_line):
        following = command_line[index + 1] if index + 1 < len(command_line) else None
        if argument in ("--exclude", "-e") and following is not None:
            patterns.append(following)
        elif argument.startswith("--exclude="):
            patterns.append(argument.removeprefix("--exclude="))
        elif argument.startswith("-e") and len(argument) > 2 and not argument.startswith("--"):
            patterns.append(argument[2:])
    return tuple(patterns)


def locate(roots: Sequence[str], command_line: Sequence[str], cwd: str) -> dict[str, str]:
    """Each root's place on the box (absolute, normalised) -> its archive path."""
    absolute = {os.path.normpath(argument) for argument in command_line if argument.startswith("/")}
    relative = {os.path.normpath(argument) for argument in command_line
                if argument and not argument.startswith(("/", "-")) and "::" not in argument}
    places: dict[str, str] = {}
    for root in roots:
        named_relative = os.path.normpath(root) in relative and "/" + root not in absolute
        if named_relative and cwd.startswith("/"):
            places[os.path.normpath(os.path.join(cwd, root))] = root
        else:
            places["/" + root] = root
    return places
