"""Wiring: settings, state, socket, then one trio nursery that runs everything until a signal."""

from __future__ import annotations

import argparse
import gc
import logging
import resource
import signal
import sys
from dataclasses import replace
from datetime import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from backupd.actions.repository import keep_view_current
from backupd.access import allowed_levels
from backupd.api import dispatch
from backupd.events import Change, Subscriber
from backupd.jobs import JobLogHandler
from backupd.actions.mirror_schedule import keep_mirrored
from backupd.loop_watch import LoopWatch
from backupd.metrics import keep_metrics_file
from backupd.scheduler import Scheduler
from backupd.restore.errors import RestoreError
from backupd.restore.journal import unfinished_journals
from backupd.restore.transaction import recover
from backupd.server import ConnectionLimits, Server, SocketUnusable, bind_unix_socket
from backupd.service import Service
from backupd.settings import Settings, SettingsError, load_settings
from backupd.store import Store, StoreError
from backupd.clock import local_zone
from backupd.systemd import JournalFormatter, Notifier, activated_socket, under_journal, watchdog_interval

log = logging.getLogger("backupd")

RESTORE_INCOMPLETE = "restore_incomplete"
# How long systemd should wait for a stop that has to stop borg first.
STOP_TIMEOUT_WITH_JOB = 60.0


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
    logging.getLogger("backupd").addHandler(JobLogHandler())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    def with_arguments(settings: Settings) -> Settings:
        if args.socket is not None:
            settings = replace(settings, socket=args.socket.absolute())
        if args.state_dir is not None:
            settings = replace(settings, state_dir=args.state_dir.absolute())
        return settings

    def read_settings() -> Settings:
        return with_arguments(load_settings(args.config))

    unreadable: SettingsError | None = None
    try:
        settings = read_settings()
    except SettingsError as error:
        # Up and answering, so clients learn what is wrong instead of waiting on the socket.
        log.error("%s; serving with no work done until the settings are fixed and reloaded", error)
        settings, unreadable = with_arguments(Settings()), error
    raise_descriptor_limit()
    try:
        trio.run(run, settings, read_settings, unreadable)
    except (StoreError, SocketUnusable, OSError) as error:
        log.error("cannot start: %s", error)
        sys.exit(1)


def raise_descriptor_limit() -> None:
    """Take every descriptor the hard limit allows: the usual soft limit of 1024 is for select()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:
        log.warning("cannot raise the open file limit from %s to %s: %s", soft, hard, error)


async def run(settings: Settings, read_settings: Callable[[], Settings], unreadable: SettingsError | None = None) -> None:
    # Taken before the socket answers: a stop request right after start-up is a clean stop.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        await serve(settings, read_settings, signals, unreadable)


async def serve(settings: Settings, read_settings: Callable[[], Settings], signals: AsyncIterator[int],
                unreadable: SettingsError | None = None) -> None:
    loop_watch = LoopWatch()
    trio.lowlevel.add_instrument(loop_watch)
    store = Store(settings.state_dir)
    store.open()
    service = Service(settings, store)
    await service.load_off_loop()
    if unreadable is not None:
        service.settings_unreadable(unreadable)
    await finish_interrupted_restores(service)
    # The code and state loaded so far live as long as the daemon: the collector's full passes
    # (tens of ms on the event loop) need not walk them again.
    gc.freeze()
    activated = activated_socket()
    listener = trio.socket.from_stdlib_socket(activated) if activated else bind_unix_socket(
        settings.socket, settings.socket_mode, settings.socket_group
    )
    notifier = Notifier()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.jobs.run)
            limits = ConnectionLimits(readers=settings.max_connections, per_user=settings.max_connections_per_user,
                                      idle_timeout=settings.idle_timeout)
            server = Server(listener, partial(dispatch, service), service.hub,
                            lambda peer: allowed_levels(peer, service.settings.access), limits)
            await nursery.start(server.run)
            log.info("listening on %s", settings.socket)
            notifier.ready(describe(service))
            scheduler = Scheduler(service)
            service.changes.on(Change.CONFIG, lambda _: scheduler.reschedule())
            service.changes.on(Change.JOB_FINISHED, lambda _: scheduler.wake())
            await nursery.start(scheduler.run)
            nursery.start_soon(report_status, service, notifier)
            await nursery.start(service.notify.run)
            await nursery.start(keep_metrics_file, service, loop_watch)
            await nursery.start(keep_mirrored, service.mirror_parts, service.changes)
            nursery.start_soon(keep_view_current, service.parts, service.now_doing)
            if (interval := watchdog_interval()) is not None:
                nursery.start_soon(ping_watchdog, notifier, interval)
            reload = partial(reload_settings, service, notifier, read_settings, scheduler.wake)
            await handle_signals(signals, nursery.cancel_scope, service, notifier, reload)
    finally:
        with trio.CancelScope(shield=True):
            await service.keeper.save_whole()
        if activated is None:
            settings.socket.unlink(missing_ok=True)
        log.info("stopped")


async def finish_interrupted_restores(service: Service) -> None:
    """Restores the daemon was killed in are undone (or their clean-up finished) before
    serving. One that cannot be is a problem, and holds only its own targets; once every one
    is recovered, at a later start, the problem is gone."""
    failures: list[str] = []
    for journal in unfinished_journals(service.settings.state_dir):
        try:
            recovered = await trio.to_thread.run_sync(recover, journal)
        except RestoreError as error:
            log.error("an interrupted restore could not be undone: %s", error)
            failures.append(str(error))
            continue
        if recovered:
            log.warning("an interrupted restore was found: %s", recovered)
    if failures:
        message = f"An interrupted restore could not be undone automatically: {'; '.join(failures)}"
        await service.keeper.update(problem=service.keeper.problem_from(RESTORE_INCOMPLETE, message, "restore"))
    elif service.keeper.repository.problem is not None and service.keeper.repository.problem.code == RESTORE_INCOMPLETE:
        log.info("every interrupted restore is recovered now")
        await service.keeper.update(problem=None)


async def handle_signals(
    signals: AsyncIterator[int], scope: trio.CancelScope, service: Service, notifier: Notifier,
    reload: Callable[[], Awaitable[None]],
) -> None:
    """SIGHUP reloads the settings; SIGTERM or SIGINT stops the daemon."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            await reload()
            continue
        log.info("received %s: stopping", signal.Signals(signum).name)
        notifier.stopping()
        if service.jobs.current is not None:
            notifier.extend_timeout(STOP_TIMEOUT_WITH_JOB)
        scope.cancel()
        return


async def reload_settings(
    service: Service, notifier: Notifier, read_settings: Callable[[], Settings], replan: Callable[[], None]
) -> None:
    """Take new operator settings without dropping connections or a running job. The socket
    and the state folder stay as they are; a broken file keeps the old settings."""
    notifier.reloading()
    try:
        new = await trio.to_thread.run_sync(read_settings)
    except SettingsError as error:
        if service.settings_error is not None:
            log.error("settings still unreadable: %s", error)
            service.settings_unreadable(error)
            notifier.ready(describe(service))
            return
        log.error("settings not reloaded, keeping the old ones: %s", error)
        notifier.ready(f"settings not reloaded: {error}")
        return
    current = service.settings
    service.settings = replace(new, socket=current.socket, state_dir=current.state_dir,
                               borg_base_dir=current.borg_base_dir)
    service.zone = local_zone(new.timezone)
    if service.settings_error is not None:
        service.settings_unreadable(None)
    replan()
    log.info("settings reloaded")
    notifier.ready(describe(service))


async def ping_watchdog(notifier: Notifier, interval: float) -> None:
    """From the event loop itself, so a blocked loop stops the pings and systemd notices."""
    while True:
        notifier.send("WATCHDOG=1")
        await trio.sleep(interval)


async def report_status(service: Service, notifier: Notifier) -> None:
    """Keep systemd's STATUS= line current from the daemon's own notifications."""
    subscriber: Subscriber = service.hub.subscribe()
    shown = None
    try:
        while await subscriber.next_batch():
            # Only changes: each message is a datagram that systemd (or a test) must read.
            if (status := describe(service)) != shown:
                notifier.status(status)
                shown = status
    finally:
        service.hub.unsubscribe(subscriber)


def describe(service: Service) -> str:
    job = service.jobs.current
    if service.settings_error is not None:
        return f"settings unreadable, no work done: {service.settings_error}"
    if service.config is None:
        return "not configured"
    if job is not None:
        percent = job.progress.percent
        return f"running {job.kind}" + (f" at {percent:.0f} %" if percent is not None else "")
    problem = service.overview.problem()
    if problem is not None:
        return f"{service.activity}; problem: {problem.message}"
    if service.next_run is not None:
        next_run = datetime.fromtimestamp(service.next_run, service.zone).strftime("%Y-%m-%d %H:%M")
        return f"{service.activity}; next snapshot {next_run}"
    return str(service.activity)
