"""Export the repository key with a one-page note on recovering the data by hand."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from backupd.borg import commands
from backupd.borg.archives import encryption_mode
from backupd.actions.parts import RepositoryParts

RECOVERY_NOTE = """\
Edgebox backup recovery note
============================

Repository:  {repository}
Encryption:  {encryption}
Exported:    {exported}
Archives:    named {prefix}<date and time in UTC>

Keep this note, the key below and your passphrase in safe places away from the box.
The passphrase is not in this note: without it the backups cannot be read.

To get your data back on another Edgebox: install it, open Backups, and configure it
with the repository location above and your passphrase; the Restore button appears.
{keyfile_on_edgebox}
To get your data back by hand on any Linux machine:

 1. Install BorgBackup 1.4 (for example `pip install "borgbackup>=1.4,<1.5"`).
 2. {import_step}
 3. List the snapshots (borg asks for the passphrase):
        borg list {repository}
 4. Extract one into the current folder:
        borg extract --progress {repository}::<snapshot name>
    Paths inside a snapshot are the box's absolute paths without the leading "/".

Key
---

{key}
"""
IMPORT_KEY = """Save the key below (from the line starting "BORG_KEY" to the end) as key.txt and run
        borg key import {repository} key.txt"""
KEYFILE_IMPORT = (IMPORT_KEY + """
    This repository keeps its key outside ("{mode}" mode), so borg cannot read it
    without this step.""")
REPOKEY_IMPORT = ("""The key is inside the repository ("{mode}" mode). Only if borg says it is missing
    or damaged: """ + IMPORT_KEY)
KEYFILE_ON_EDGEBOX = """This repository keeps its key outside ("{mode}" mode): without the key below nobody,
not even another Edgebox, can read the backups. If the box that made them is gone, get your
data back by hand as below, with step 2.
"""


async def export_key(parts: RepositoryParts, zone: tzinfo, prefix: str) -> dict[str, Any]:
    config = parts.require_config()
    exported = await parts.borg.run(commands.key_export(config.repository))
    info = await parts.borg.run(commands.info_repository(config.repository))
    mode = encryption_mode(info.json) or config.encryption
    keyfile = mode.startswith("keyfile")
    key = exported.stdout.strip()
    note = RECOVERY_NOTE.format(
        repository=config.repository,
        encryption=mode,
        exported=datetime.now(zone).strftime("%Y-%m-%d %H:%M %Z"),
        prefix=prefix,
        import_step=(KEYFILE_IMPORT if keyfile else REPOKEY_IMPORT).format(repository=config.repository, mode=mode),
        keyfile_on_edgebox=KEYFILE_ON_EDGEBOX.format(mode=mode) if keyfile else "",
        key=key,
    )
    return {"repository": config.repository, "encryption": mode, "key": key, "note": note}
