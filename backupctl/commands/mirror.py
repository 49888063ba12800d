"""`backupctl mirror ...`: the off-site copy of the repository in a cloud bucket."""

from __future__ import annotations

import argparse
import os
from typing import Any

from backupctl.commands.jobs import run_job
from backupctl.invocation import EXIT_OK, Invocation
from backupctl.records import ConfigureResult, MirrorOffResult, MirrorSetupResult, Overview
from backupctl.render import text as fmt
from backupctl.render.jobs import describe_mirror_result
from backupctl.render.overview import describe_mirror
from backupctl.terminal import confirmed, read_passphrase, read_secret


def run_mirror(invocation: Invocation) -> int:
    action = invocation.args.mirror_action or "show"
    return {"show": _show, "set": _set, "restore": _restore, "now": _now, "off": _off}[action](invocation)


def mirror_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"provider": args.provider, "bucket": args.bucket, "access_key_id": args.key_id,
                               "secret_access_key": read_secret(args.secret_file)}
    if args.prefix is not None:
        options["prefix"] = args.prefix
    if args.region is not None:
        options["region"] = args.region
    if args.take_over:
        options["take_over"] = True
    if args.replace_object_count is not None:
        options["replace_object_count"] = args.replace_object_count
    return options


def _set(invocation: Invocation) -> int:
    result = invocation.client.call("configure_mirror", mirror_options(invocation.args))
    if invocation.as_json:
        invocation.emit_json(result)
        return EXIT_OK
    mirrored = MirrorSetupResult.from_wire(result)
    taken = " (the mirror of another repository there was replaced)" if mirrored.taken_over else ""
    invocation.say(f"The repository is mirrored to {mirrored.location}{taken}; the first copy starts now.")
    return EXIT_OK


def _restore(invocation: Invocation) -> int:
    args = invocation.args
    params: dict[str, Any] = {"mirror": mirror_options(args), "passphrase": read_passphrase(args.passphrase_file)}
    if args.repository:
        params["repository"] = os.path.abspath(args.repository)
    if args.create:
        params["create"] = True
    result = invocation.client.call("configure", params)
    if invocation.as_json:
        invocation.emit_json(result)
        return EXIT_OK
    count = fmt.plural(ConfigureResult.from_wire(result).snapshot_count, "snapshot")
    invocation.say(f"Connected to the repository from the bucket ({count}); `backupctl restore` puts one back.")
    return EXIT_OK


def _now(invocation: Invocation) -> int:
    params = {"compare_all": True} if invocation.args.compare_all else None
    return run_job(invocation, "mirror", describe_mirror_result, params)


def _off(invocation: Invocation) -> int:
    if not confirmed(invocation, "Stop mirroring and forget the keys? The bucket is left as it is.", "stop mirroring"):
        return EXIT_OK
    result = invocation.client.call("mirror_off")
    if invocation.as_json:
        invocation.emit_json(result)
    else:
        location = MirrorOffResult.from_wire(result).location
        invocation.say(f"No longer mirrored; {location or 'the bucket'} keeps what it holds.")
    return EXIT_OK


def _show(invocation: Invocation) -> int:
    overview = Overview.from_wire(invocation.client.call("status"))
    if invocation.as_json:
        invocation.emit_json(overview.mirror.to_wire() if overview.mirror else None)
        return EXIT_OK
    invocation.say(describe_mirror(overview.mirror))
    return EXIT_OK
