"""Export the repository key with a one-page note on recovering the data by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backupd.borg import commands
from backupd.service import Service

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
with the repository location and passphrase above; the Restore button appears.

To get your data back by hand on any Linux machine:

 1. Install BorgBackup 1.4 (for example `pip install "borgbackup>=1.4,<1.5"`).
 2. If borg says the key is missing or damaged, save the key below as key.txt and run
        borg key import {repository} key.txt
 3. List the snapshots (borg asks for the passphrase):
        borg list {repository}
 4. Extract one into the current folder:
        borg extract --progress {repository}::<snapshot name>
    Paths inside a snapshot are the box's absolute paths without the leading "/".

Key
---

{key}
"""


async def export_key(service: Service, prefix: str) -> dict[str, Any]:
    config = service.require_config()
    exported = await service.borg(commands.key_export(config.repository))
    key = exported.stdout.strip()
    note = RECOVERY_NOTE.format(
        repository=config.repository,
        encryption=config.encryption,
        exported=datetime.now(service.zone).strftime("%Y-%m-%d %H:%M %Z"),
        prefix=prefix,
        key=key,
    )
    return {"repository": config.repository, "key": key, "note": note}
