"""`backupctl mirror ...`: the off-site copy of the repository in a cloud bucket."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from typing import Any

from backupctl import format as fmt
from backupctl.cli import (
    EXIT_OK,
    Invocation,
    JobOutcome,
    UsageError,
    confirmed,
    read_passphrase,
    run_job,
)

SECRET_VARIABLE = "BACKUPCTL_MIRROR_SECRET"


def add_mirror_parser(mirror: argparse.ArgumentParser, shared: argparse.ArgumentParser) -> None:
    actions = mirror.add_subparsers(dest="mirror_action", metavar="ACTION")
    show = actions.add_parser("show", parents=[shared], help="the mirror's place and state (the default)")
    show.set_defaults(mirror_action="show")
    for name, help_text in (("set", "check a bucket and mirror the repository into it"),
                            ("restore", "on a new box: download the repository from a bucket and connect to it")):
        action = actions.add_parser(name, parents=[shared], help=help_text, description=help_text)
        action.add_argument("provider", help="s3, b2, wasabi, or the endpoint URL of an S3-compatible service")
        action.add_argument("bucket")
        action.add_argument("--prefix", help="the folder in the bucket (default: this box's name)")
        action.add_argument("--region", help="the bucket's region, where the provider needs one")
        action.add_argument("--key-id", required=True, help="the access key id (B2: the application key id)")
        action.add_argument("--secret-file", metavar="FILE",
                            help=f"read the secret key from the first line of FILE (- for stdin); "
                                 f"else ${SECRET_VARIABLE}, else a prompt")
        action.add_argument("--take-over", action="store_true",
                            help="replace the mirror of another repository under that prefix")
    restore = actions.choices["restore"]
    restore.add_argument("--repository", metavar="PATH",
                         help="where the repository goes on this box (default: in backupd's state folder)")
    restore.add_argument("--passphrase-file", metavar="FILE",
                         help="read the repository's passphrase from the first line of FILE (- for stdin)")
    now = actions.add_parser("now", parents=[shared], help="bring the bucket up to date now and show the progress")
    now.add_argument("--compare-all", action="store_true", help="afterwards compare every file with the bucket")
    now.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    off = actions.add_parser("off", parents=[shared], help="stop mirroring and forget the keys; the bucket stays")
    off.add_argument("--yes", action="store_true", help="without asking for confirmation")


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
    return options


def read_secret(secret_file: str | None) -> str:
    """From the file (- for stdin), else $BACKUPCTL_MIRROR_SECRET, else a prompt: never argv."""
    try:
        if secret_file == "-":
            secret = sys.stdin.readline()
        elif secret_file is not None:
            with open(secret_file, encoding="utf-8") as file:
                secret = file.readline()
        elif os.environ.get(SECRET_VARIABLE):
            secret = os.environ[SECRET_VARIABLE]
        elif sys.stdin.isatty():
            secret = getpass.getpass("Secret key: ")
        else:
            secret = sys.stdin.readline()
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise UsageError(f"cannot read the secret key: {getattr(error, 'strerror', None) or error}") from None
    secret = secret.strip()
    if not secret:
        raise UsageError(f"no secret key: use --secret-file, set {SECRET_VARIABLE} or run in a terminal")
    return secret


def _set(invocation: Invocation) -> int:
    result = invocation.client.call("configure_mirror", mirror_options(invocation.args))
    if invocation.as_json:
        invocation.emit_json(result)
        return EXIT_OK
    taken = " (the mirror of another repository there was replaced)" if result.get("taken_over") else ""
    invocation.say(f"The repository is mirrored to {result['location']}{taken}; the first copy starts now.")
    return EXIT_OK


def _restore(invocation: Invocation) -> int:
    args = invocation.args
    params: dict[str, Any] = {"mirror": mirror_options(args), "passphrase": read_passphrase(args.passphrase_file)}
    if args.repository:
        params["repository"] = os.path.abspath(args.repository)
    result = invocation.client.call("configure", params)
    if invocation.as_json:
        invocation.emit_json(result)
        return EXIT_OK
    count = fmt.plural(result.get("snapshot_count", 0), "snapshot")
    invocation.say(f"Connected to the repository from the bucket ({count}); `backupctl restore` puts one back.")
    return EXIT_OK


def _now(invocation: Invocation) -> int:
    params = {"compare_all": True} if invocation.args.compare_all else None
    return run_job(invocation, "mirror", describe_mirror_result, params)


def describe_mirror_result(job: Mapping[str, Any]) -> JobOutcome:
    result = job.get("result") or {}
    uploaded = fmt.plural(result.get("uploaded_files", 0), "file")
    compared = "every file" if result.get("compared") == "all" else fmt.plural(result.get("compared_files") or 0, "file")
    return JobOutcome(f"Mirrored: {uploaded} uploaded ({fmt.human_size(result.get('uploaded_bytes', 0))}), "
                      f"{result.get('deleted_files', 0)} deleted; {compared} compared with the bucket.")


def _off(invocation: Invocation) -> int:
    if not confirmed(invocation, "Stop mirroring and forget the keys? The bucket is left as it is.", "stop mirroring"):
        return EXIT_OK
    result = invocation.client.call("mirror_off")
    if invocation.as_json:
        invocation.emit_json(result)
    else:
        invocation.say(f"No longer mirrored; {result.get('location') or 'the bucket'} keeps what it holds.")
    return EXIT_OK


def _show(invocation: Invocation) -> int:
    mirror = invocation.client.call("status").get("mirror")
    if invocation.as_json:
        invocation.emit_json(mirror)
        return EXIT_OK
    invocation.say(describe_mirror(mirror))
    return EXIT_OK


def describe_mirror(mirror: Mapping[str, Any] | None) -> str:
    if mirror is None:
        return "No off-site mirror (backupctl mirror set PROVIDER BUCKET --key-id ID)."
    lines = [f"Mirror:  {mirror['location']} ({mirror['state']})"]
    if mirror.get("last_success"):
        lines.append(f"Last copy: {fmt.timestamp(mirror['last_success'])}")
    waiting = mirror.get("bytes_waiting")
    lines.append(f"Not off-site yet: {fmt.plural(mirror.get('snapshots_not_off_site', 0), 'snapshot')}"
                 + (f", {fmt.human_size(waiting)}" if waiting is not None else ""))
    if mirror.get("last_error"):
        lines.append(f"Last error: {mirror['last_error']['code']}: {mirror['last_error']['message']}")
    return "\n".join(lines)
