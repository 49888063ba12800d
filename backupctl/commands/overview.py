"""status, watch and ping."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from backupctl.client import DaemonUnreachable
from backupctl.invocation import EXIT_OK, Invocation
from backupctl.protocol import Notification
from backupctl.records import Overview, Ping
from backupctl.render.events import describe_notification
from backupctl.render.overview import describe_live_overview, describe_overview
from backupctl.render.text import to_json
from backupctl.terminal import LiveScreen, terminal_width

LIVE_REFRESH_INTERVAL = 1.0


def run_status(invocation: Invocation) -> int:
    overview = invocation.client.call("status")
    if invocation.as_json:
        invocation.emit_json(overview)
        return EXIT_OK
    invocation.say(describe_overview(Overview.from_wire(overview), time.time(), terminal_width(invocation.stdout)))
    return EXIT_OK


def run_watch(invocation: Invocation) -> int:
    client = invocation.client
    client.set_timeout(None)
    client.call("subscribe")
    if not invocation.as_json and invocation.stdout.isatty():
        return watch_live(invocation)
    if not invocation.as_json:
        invocation.warn(f"Watching backupd at {client.path}; press Ctrl-C to stop.")
    width = terminal_width(invocation.stdout)
    for notification in client.events():
        if invocation.as_json:
            invocation.say(to_json({"method": notification.method, "params": notification.params}, indent=None))
        else:
            invocation.say(describe_notification(notification, time.time(), width))
    raise DaemonUnreachable("backupd closed the connection")


def watch_live(invocation: Invocation) -> int:
    """The overview, redrawn at every notification and every second (for the relative times)."""
    client = invocation.client
    overview = client.call("status")
    client.set_timeout(LIVE_REFRESH_INTERVAL)
    with LiveScreen(invocation.stdout) as screen:
        while True:
            screen.draw(describe_live_overview(Overview.from_wire(overview), client.path, time.time(), terminal_width(invocation.stdout)))
            try:
                notification = next(client.events(), None)
            except TimeoutError:
                continue
            if notification is None:
                raise DaemonUnreachable("backupd closed the connection")
            overview = updated_overview(overview, notification)


def updated_overview(overview: Mapping[str, Any], notification: Notification) -> dict[str, Any]:
    """The overview after a notification: a new one, or the running job's newest record."""
    if notification.method == "status.changed":
        return dict(notification.params)
    if notification.method in ("job.started", "job.progress"):
        return {**overview, "job": notification.params}
    return dict(overview)


def run_ping(invocation: Invocation) -> int:
    started = time.perf_counter()
    answer = invocation.client.call("ping")
    elapsed = time.perf_counter() - started
    if invocation.as_json:
        invocation.emit_json(answer)
    else:
        ping = Ping.from_wire(answer)
        invocation.say(
            f"backupd {ping.version} (API {ping.api}) at {invocation.client.path} "
            f"answered in {elapsed * 1000:.1f} ms"
        )
    return EXIT_OK
