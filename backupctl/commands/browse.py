"""snapshots, ls, versions and diff: looking inside the repository."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from backupctl.client import Client
from backupctl.invocation import EXIT_OK, Invocation
from backupctl.render.browse import describe_changes, describe_listing, describe_snapshots, describe_versions

PAGE_SIZE = 1000
SNAPSHOTS_PAGE = 1000


def pages(client: Client, method: str, params: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
    """Each page of a paged method's answer, following its cursor until limit items were shown."""
    shown = 0
    while True:
        page = client.call(method, {**params, "limit": min(PAGE_SIZE, limit - shown) if limit else PAGE_SIZE})
        yield page
        shown += len(page.get("entries", page.get("changes", [])))
        if page.get("cursor") is None or (limit is not None and shown >= limit):
            return
        params = {**params, "cursor": page["cursor"]}


def run_snapshots(invocation: Invocation) -> int:
    snapshots = list(invocation.client.paged("snapshots", "snapshots", {"limit": SNAPSHOTS_PAGE}))
    if invocation.as_json:
        invocation.emit_json(snapshots)
        return EXIT_OK
    invocation.say(describe_snapshots(snapshots, time.time()))
    return EXIT_OK


def run_ls(invocation: Invocation) -> int:
    args = invocation.args
    snapshot, path = args.snapshot, args.path
    if snapshot is not None and snapshot.startswith("/") and path is None:
        snapshot, path = None, snapshot
    params: dict[str, Any] = {}
    if snapshot is not None:
        params["snapshot"] = snapshot
    if path is not None:
        params["path"] = os.path.normpath(path) if path != "/" else path
    listed = list(pages(invocation.client, "browse", params, args.limit))
    if invocation.as_json:
        first = listed[0]
        invocation.emit_json({**first, "entries": [entry for page in listed for entry in page["entries"]],
                              "cursor": listed[-1]["cursor"]})
        return EXIT_OK
    entries = [entry for page in listed for entry in page["entries"]]
    invocation.say(describe_listing(listed[0], entries, more=listed[-1].get("cursor") is not None))
    return EXIT_OK


def run_versions(invocation: Invocation) -> int:
    found = invocation.client.call("versions", {"path": os.path.abspath(invocation.args.path)})
    if invocation.as_json:
        invocation.emit_json(found)
        return EXIT_OK
    invocation.say(describe_versions(found))
    return EXIT_OK


def run_diff(invocation: Invocation) -> int:
    args = invocation.args
    params = {"from": args.old} | ({"to": args.new} if args.new is not None else {})
    listed = list(pages(invocation.client, "compare", params, args.limit))
    if invocation.as_json:
        invocation.emit_json({**listed[0], "changes": [change for page in listed for change in page["changes"]],
                              "cursor": listed[-1]["cursor"]})
        return EXIT_OK
    changes = [change for page in listed for change in page["changes"]]
    invocation.say(describe_changes(listed[0], changes, more=listed[-1].get("cursor") is not None))
    return EXIT_OK
