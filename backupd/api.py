"""The method table: each method's handler, access level and declared params."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from backupctl.protocol import API_VERSION, ErrorCode, Request, RpcError
from backupd.access import Level, Peer, allowed_levels
from backupd.actions.browse import BROWSE_PARAMS, COMPARE_PARAMS, VERSIONS_PARAMS, browse, compare, versions
from backupd.actions.check import start_check
from backupd.actions.configure import change, configure
from backupd.actions.export_key import export_key
from backupd.actions.mirror import configure_mirror, start_mirror, turn_off
from backupd.actions.reset import reset
from backupd.actions.restore import RESTORE_PARAMS, start_restore
from backupd.actions.snapshot import start_snapshot
from backupd.archive_names import OwnArchives
from backupd.config import CHANGE_PARAMS, CONFIGURE_PARAMS, unconfigured_view
from backupd.errors import invalid_params
from backupd.events import NotificationFilter
from backupd.jobs import HISTORY_LIMIT
from backupd.mirror.config import MIRROR_PARAMS
from backupd.pages import MAX_PAGE_BYTES, PAGE_PARAMS, all_snapshots, snapshot_page
from backupd.params import Param, check_params
from backupd.service import Service
from backupd.ssh import authorized_keys_line, remote_location
from backupd.views import Shown, View, view_for

DEFAULT_JOBS_LIMIT = 20
DEFAULT_SNAPSHOTS_LIMIT = 200


@dataclass
class Call:
    service: Service
    params: dict[str, Any]
    peer: Peer
    view: View
    subscribe: Callable[[NotificationFilter], None] = field(repr=False)


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    handler: Handler
    access: Level
    params: tuple[Param, ...] = ()
    shows: Shown = Shown.NOTHING_PRIVATE


@cache
def daemon_version() -> str:
    """The version of the code this process runs, read from the package metadata once."""
    try:
        return version("backupd")
    except PackageNotFoundError:
        return "unknown"


async def ping(call: Call) -> dict[str, Any]:
    return {"version": daemon_version(), "api": API_VERSION}


async def status(call: Call) -> dict[str, Any]:
    return call.service.overview.record().to_wire()


async def show_config(call: Call) -> dict[str, Any]:
    service = call.service
    shown = service.config.public() if service.config else unconfigured_view(service.settings.defaults)
    return {**shown, "mirror": service.mirror.public() if service.mirror else None}


async def configure_repository(call: Call) -> dict[str, Any]:
    return await configure(call.service.mirror_parts, call.service.configuration, call.params, call.peer.record())


async def change_settings(call: Call) -> dict[str, Any]:
    return await change(call.service.parts, call.service.configuration, call.params)


async def snapshot(call: Call) -> dict[str, Any]:
    job = start_snapshot(call.service.parts, "manual", call.peer.record())
    if call.params.get("wait", False):
        await call.service.jobs.wait(job)
    return job.to_record()


async def set_mirror(call: Call) -> dict[str, Any]:
    return await configure_mirror(call.service.mirror_parts, call.params, call.peer.record())


async def mirror_now(call: Call) -> dict[str, Any]:
    job = start_mirror(call.service.mirror_parts, "manual", call.peer.record(), call.params.get("compare_all", False))
    if call.params.get("wait", False):
        await call.service.jobs.wait(job)
    return job.to_record()


async def mirror_off(call: Call) -> dict[str, Any]:
    return await turn_off(call.service.mirror_parts, call.peer.record())


async def check(call: Call) -> dict[str, Any]:
    job = start_check(call.service.parts, "manual", call.peer.record())
    if call.params.get("wait", False):
        await call.service.jobs.wait(job)
    return job.to_record()


async def restore(call: Call) -> dict[str, Any]:
    job = start_restore(call.service.snapshot_parts, call.params, call.peer.record())
    if call.params.get("wait", False):
        await call.service.jobs.wait(job)
    return job.to_record()


async def reset_configuration(call: Call) -> dict[str, Any]:
    return await reset(call.service.parts, call.service.forget_configuration, call.peer.record())


async def export_repository_key(call: Call) -> dict[str, Any]:
    own = OwnArchives.of_host(call.service.settings.hostname)
    return await export_key(call.service.parts, call.service.zone, own.prefix)


async def ssh_key(call: Call) -> dict[str, Any]:
    identity = await call.service.borg.ensure_ssh_identity()
    public_key = identity.public_key.read_text().strip()
    config = call.service.config
    server = remote_location(config.repository) if config else None
    return {
        "public_key": public_key,
        "authorized_keys": authorized_keys_line(public_key, server.path if server else None),
    }


async def snapshots(call: Call) -> list[dict[str, Any]] | dict[str, Any]:
    call.service.require_config()
    by_age = call.service.keeper.repository.archives
    if not call.params:
        return all_snapshots(by_age)
    return snapshot_page(by_age, call.params.get("limit", DEFAULT_SNAPSHOTS_LIMIT), call.params.get("cursor", "")).to_record()


async def browse_snapshot(call: Call) -> dict[str, Any]:
    if not call.view.admin and call.params.get("path", "/") not in ("/", b"/"):
        # Whether a snapshot holds a path names a file a reader may not be able to list.
        raise RpcError(ErrorCode.FORBIDDEN, "Only admins may name a path inside a snapshot", {"param": "path"})
    return await browse(call.service.snapshot_parts, call.params)


async def path_versions(call: Call) -> dict[str, Any]:
    return await versions(call.service.snapshot_parts, call.params)


async def compare_snapshots(call: Call) -> dict[str, Any]:
    return await compare(call.service.snapshot_parts, call.params)


async def jobs(call: Call) -> list[dict[str, Any]] | dict[str, Any]:
    limit = call.params.get("limit", DEFAULT_JOBS_LIMIT)
    if not 1 <= limit <= HISTORY_LIMIT:
        raise invalid_params("limit", f"limit must be between 1 and {HISTORY_LIMIT}")
    if "cursor" not in call.params:
        return call.service.jobs.page(None, limit, MAX_PAGE_BYTES)[0]
    records, cursor = call.service.jobs.page(call.params["cursor"] or None, limit, MAX_PAGE_BYTES)
    return {"jobs": records, "cursor": cursor}


async def job(call: Call) -> dict[str, Any]:
    return call.service.jobs.find(call.params["id"]).to_full_record()


async def cancel(call: Call) -> dict[str, Any]:
    """The job's state when asked: a running job is being cancelled, a finished one is left as it ended."""
    state = call.service.jobs.find(call.params["job"]).state
    call.service.jobs.cancel(call.params["job"])
    return {"state": str(state)}


async def subscribe(call: Call) -> dict[str, Any]:
    call.subscribe(call.view.notification)
    return {}


METHODS: dict[str, Method] = {
    "ping": Method(ping, Level.READ),
    "status": Method(status, Level.READ, shows=Shown.OVERVIEW),
    "config": Method(show_config, Level.READ, shows=Shown.CONFIG),
    "configure": Method(configure_repository, Level.ADMIN, CONFIGURE_PARAMS),
    "change": Method(change_settings, Level.ADMIN, CHANGE_PARAMS, shows=Shown.CONFIG),
    "snapshot": Method(snapshot, Level.ADMIN, (Param("wait", bool),), shows=Shown.JOB),
    "snapshots": Method(snapshots, Level.READ, PAGE_PARAMS, shows=Shown.SNAPSHOTS),
    "configure_mirror": Method(set_mirror, Level.ADMIN, MIRROR_PARAMS),
    "mirror": Method(mirror_now, Level.ADMIN, (Param("wait", bool), Param("compare_all", bool)), shows=Shown.JOB),
    "mirror_off": Method(mirror_off, Level.ADMIN),
    "check": Method(check, Level.ADMIN, (Param("wait", bool),), shows=Shown.JOB),
    "restore": Method(restore, Level.ADMIN, RESTORE_PARAMS, shows=Shown.JOB),
    "reset": Method(reset_configuration, Level.ADMIN),
    "export_key": Method(export_repository_key, Level.ADMIN),
    "ssh_key": Method(ssh_key, Level.ADMIN),
    "browse": Method(browse_snapshot, Level.READ, BROWSE_PARAMS, shows=Shown.BROWSE),
    "versions": Method(path_versions, Level.ADMIN, VERSIONS_PARAMS),
    "compare": Method(compare_snapshots, Level.READ, COMPARE_PARAMS, shows=Shown.CHANGES),
    "jobs": Method(jobs, Level.READ, PAGE_PARAMS, shows=Shown.JOBS),
    "job": Method(job, Level.READ, (Param("id", str, required=True),), shows=Shown.JOB),
    "cancel": Method(cancel, Level.ADMIN, (Param("job", str, required=True),)),
    "subscribe": Method(subscribe, Level.READ),
}


async def dispatch(service: Service, request: Request, peer: Peer,
                   subscribe_connection: Callable[[NotificationFilter], None]) -> Any:
    """Run one request and return its result as the caller may see it, or raise RpcError."""
    method = METHODS.get(request.method)
    if method is None:
        raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"No method named {request.method!r}")
    levels = allowed_levels(peer, service.settings.access)
    if method.access not in levels:
        raise RpcError(ErrorCode.FORBIDDEN, f"{request.method} is not allowed for uid {peer.uid}")
    if method.access == Level.ADMIN:
        service.require_settings()
    check_params(request.params, method.params)
    view = view_for(levels)
    result = await method.handler(Call(service, request.params, peer, view, subscribe_connection))
    return view.shown(method.shows, result)
