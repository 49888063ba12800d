"""The passphrase is found nowhere but the 0600 configuration file while a snapshot runs."""

import json
import os
from pathlib import Path

from tests.conftest import PASSPHRASE
from tests.processes import process_tree
from tests.calls import start_large_snapshot, wait_for


def test_the_passphrase_never_leaves_the_configuration_file(daemon, repository, large_data):
    client, job = start_large_snapshot(daemon, repository, large_data)
    with client:
        borg = wait_for(lambda: [pid for pid in process_tree(daemon.process.pid)[1:]
                                 if b"borg" in Path(f"/proc/{pid}/cmdline").read_bytes()])
        for pid in process_tree(daemon.process.pid):
            for name in ("cmdline", "environ"):
                assert PASSPHRASE.encode() not in Path(f"/proc/{pid}/{name}").read_bytes(), (pid, name)
        answers = [client.call(method) for method in ("status", "config", "jobs", "snapshots")]
        for event in client.events():
            answers.append(event.params)
            if event.method == "job.finished":
                break
        answers.append(client.call("jobs"))
    assert borg
    assert PASSPHRASE not in json.dumps(answers)
    assert PASSPHRASE not in daemon.log()
    holders = [path.name for path in daemon.state_dir.rglob("*")
               if path.is_file() and PASSPHRASE.encode() in path.read_bytes()]
    assert holders == ["config.json"]
    assert os.stat(daemon.state_dir / "config.json").st_mode & 0o777 == 0o600
