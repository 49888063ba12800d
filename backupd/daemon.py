"""Wiring: settings, state, socket, then one trio nursery that runs everything until a signal."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

import trio

from backupd.actions.repository import refresh
from backupd.actions.restore import journal_path
from backupd.api import dispatch
from backupd.events import Subscriber
from backupd.scheduler import Scheduler
from backupd.restore.transaction import RestoreError, recover
from backupd.server import Server, SocketUnusable, bind_unix_socket
from backupd.service import Service
from backupd.settings import Settings, SettingsError, load_settings
from backupd.store import Store, StoreError
from backupd.systemd import JournalFormatter, Notifier, activated_socket, under_journal

log = logging.getLogger("backupd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="backupd", description="Edgebox backup daemon")
    parser.add_argument("--config", type=Path, help="operator settings (TOML); default /etc/backupd/backupd.toml")
    parser.add_argument("--socket", type=Path, help="Unix socket to listen on")
    parser.add_argument("--state-dir", type=Path, help="folder for configuration, state and job history")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    return parser.parse_args(argv)


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if under_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        log.error("%s", error)
        sys.exit(1)
    if args.socket is not None:
        settings = replace(settings, socket=args.socket.absolute())
    if args.state_dir is not None:
        settings = replace(settings, state_dir=args.state_dir.absolute())
    try:
        trio.run(run, settings)
    except (StoreError, SocketUnusable, OSError) as error:
        log.error("cannot start: %s", error)
        sys.exit(1)


async def run(settings: Settings) -> None:
    store = Store(settings.state_dir)
    store.open()
    service = Service(settings, store)
    service.load()
    await finish_interrupted_restore(service)
    activated = activated_socket()
    listener = trio.socket.from_stdlib_socket(activated) if activated else bind_unix_socket(
        settings.socket, settings.socket_mode, settings.socket_group
    )
    notifier = Notifier()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.jobs.run)
            server = Server(listener, partial(dispatch, service), service.hub)
            await nursery.start(server.run)
            log.info("listening on %s", settings.socket)
            service.activity = "idle"
            notifier.ready(describe(service))
            scheduler = Scheduler(
                service, service.clock, service.zone, settings.jitter, check_interval=settings.check_interval_days * 86400.0
            )
            service.config_listeners.append(scheduler.reschedule)
            service.job_listeners.append(scheduler.wake)
            await nursery.start(scheduler.run)
            nursery.start_soon(report_status, service, notifier)
            nursery.start_soon(refresh, service)
            await stop_on_signal(nursery.cancel_scope, notifier)
    finally:
        if activated is None:
            settings.socket.unlink(missing_ok=True)
        log.info("stopped")


async def finish_interrupted_restore(service: Service) -> None:
    """A restore the daemon was killed in is undone (or its clean-up finished) before serving."""
    try:
        recovered = await trio.to_thread.run_sync(recover, journal_path(service))
    except RestoreError as error:
        log.error("an interrupted restore could not be undone: %s", error)
        message = f"An interrupted restore could not be undone automatically: {error}"
        await service.update_repository(problem=service.problem_from("restore_incomplete", message, "restore"))
        return
    if recovered:
        log.warning("an interrupted restore was found: %s", recovered)


async def stop_on_signal(scope: trio.CancelScope, notifier: Notifier) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping", signal.Signals(signum).name)
            notifier.stopping()
            scope.cancel()
            return


async def report_status(service: Service, notifier: Notifier) -> None:
    """Keep systemd's STATUS= line current from the daemon's own notifications."""
    subscriber: Subscriber = service.hub.subscribe()
    try:
        while await subscriber.next_batch():
            notifier.status(describe(service))
    finally:
        service.hub.unsubscribe(subscriber)


def describe(service: Service) -> str:
    job = service.jobs.current
    if service.config is None:
        return "not configured"
    if job is not None:
        percent = job.progress.get("percent")
        return f"running {job.kind}" + (f" at {percent:.0f} %" if percent is not None else "")
    problem = service.problem()
    if problem is not None:
        return f"{service.activity}; problem: {problem['message']}"
    if service.next_run is not None:
        next_run = datetime.fromtimestamp(service.next_run, service.zone).strftime("%Y-%m-%d %H:%M")
        return f"{service.activity}; next snapshot {next_run}"
    return service.activity
