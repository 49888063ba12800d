"""backupctl: the command line of backupd.

Exit codes: 0 success; 1 the daemon answered with an error (or the job failed, or a
confirmation was declined); 2 usage error; 3 the daemon cannot be reached; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backupctl.client import Client, DaemonUnreachable, socket_path
from backupctl.commands.browse import run_diff, run_ls, run_snapshots, run_versions
from backupctl.commands.jobs import run_cancel, run_check, run_jobs, run_log, run_snapshot
from backupctl.commands.mirror import run_mirror
from backupctl.commands.overview import run_ping, run_status, run_watch
from backupctl.commands.restore import run_restore
from backupctl.commands.setup import (
    run_change,
    run_config,
    run_configure,
    run_export_key,
    run_reset,
    run_ssh_key,
)
from backupctl.invocation import (
    CALL_TIMEOUT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Command,
    Invocation,
    UsageError,
    exit_code_of,
)
from backupctl.protocol import ProtocolError, RpcError
from backupctl.records import RecordError
from backupctl.render.errors import error_details
from backupctl.render.text import to_json
from backupctl.terminal import PASSPHRASE_VARIABLE, SECRET_VARIABLE


COMMANDS: dict[str, Command] = {
    "status": run_status,
    "configure": run_configure,
    "change": run_change,
    "snapshot": run_snapshot,
    "snapshots": run_snapshots,
    "check": run_check,
    "jobs": run_jobs,
    "cancel": run_cancel,
    "log": run_log,
    "restore": run_restore,
    "reset": run_reset,
    "export-key": run_export_key,
    "ssh-key": run_ssh_key,
    "watch": run_watch,
    "ping": run_ping,
    "config": run_config,
    "ls": run_ls,
    "versions": run_versions,
    "diff": run_diff,
    "mirror": run_mirror,
}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def keep_rule(text: str) -> tuple[str, int]:
    rule, separator, count = text.partition("=")
    if not separator or not rule or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected RULE=COUNT such as daily=7, got {text!r}")
    return rule, int(count)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backupctl",
        description="Control backupd, the Edgebox backup daemon.",
        epilog="Exit codes: 0 ok, 1 backupd reported an error, 2 usage error, 3 backupd unreachable, "
               "130 interrupted.",
    )
    add_global_options(parser, default_socket=None, default_json=False)
    # The same options after the command name; SUPPRESS keeps the values given before it.
    shared = argparse.ArgumentParser(add_help=False)
    add_global_options(shared, default_socket=argparse.SUPPRESS, default_json=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[shared])

    command("status", "show the backup overview")
    configure = command("configure", "create or connect to a repository and start backing up")
    configure.add_argument("repository", help="absolute path, ssh://user@host[:port]/path or user@host:path")
    add_setting_options(configure)
    configure.add_argument("--encryption", help="borg encryption mode for a new repository (default repokey-blake2)")
    configure.add_argument("--host-key", metavar="SHA256:...",
                           help="the SSH server's host key fingerprint to trust (default: trust on first use)")
    configure.add_argument(
        "--passphrase-file", metavar="FILE",
        help=f"read the passphrase from the first line of FILE (- for stdin); "
             f"else ${PASSPHRASE_VARIABLE}, else a prompt",
    )
    change = command("change", "change settings of the configured backups, keeping the others; "
                               "no passphrase needed")
    add_setting_options(change)
    change.add_argument("--no-exclude", action="store_true", help="remove every exclude pattern")
    snapshot = command("snapshot", "take a snapshot now and show its progress")
    snapshot.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    command("snapshots", "list the snapshots, newest first")
    check = command("check", "verify the repository and its snapshots (borg check)")
    check.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    jobs = command("jobs", "list recent jobs, newest first")
    jobs.add_argument("--limit", type=positive_int, help="how many (backupd's default is 20)")
    log = command("log", "show a job with its log: borg's warnings and errors, and what backupd did")
    log.add_argument("job_id", metavar="JOB_ID")
    cancel = command("cancel", "cancel a running job")
    cancel.add_argument("job_id", metavar="JOB_ID")
    restore = command("restore", "put a snapshot back where it was taken, after showing what that changes")
    restore.add_argument("--snapshot", metavar="NAME", help="the snapshot to restore (default: the newest)")
    restore.add_argument("--path", dest="paths", action="append", metavar="PATH",
                         help="restore only this file or folder (repeatable; default: all the snapshot holds)")
    restore.add_argument("--dry-run", action="store_true", help="only show what a restore would change")
    restore.add_argument("--remove-excluded", action="store_true",
                         help="remove, too, what the snapshot's exclude patterns match (kept by default)")
    restore.add_argument("--yes", action="store_true", help="restore without asking for confirmation")
    restore.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    reset = command("reset", "forget the configuration and passphrase on this box; the repository stays")
    reset.add_argument("--yes", action="store_true", help="reset without asking for confirmation")
    export_key = command("export-key", "print the repository key with a recovery note")
    export_key.add_argument("--output", metavar="FILE",
                            help="write to FILE instead of stdout (created with mode 0600, never overwritten)")
    command("ssh-key", "show this box's SSH key and the authorized_keys line for a backup server")
    command("watch", "show the overview live on a terminal (otherwise print notifications as they come), until Ctrl-C")
    command("ping", "check that backupd answers")
    command("config", "show the backup configuration (never the passphrase)")
    ls = command("ls", "list a folder of a snapshot (default: the newest snapshot, from /)")
    ls.add_argument("snapshot", nargs="?", metavar="SNAPSHOT", help="a snapshot's name (a path alone is allowed)")
    ls.add_argument("path", nargs="?", metavar="PATH", help="a folder or file as it was on this box")
    ls.add_argument("--limit", type=positive_int, help="show at most this many entries")
    versions = command("versions", "list the snapshots that hold a file or folder, with its size and time in each")
    versions.add_argument("path", metavar="PATH")
    diff = command("diff", "show what changed from snapshot A to snapshot B, or to the files now")
    diff.add_argument("old", metavar="A")
    diff.add_argument("new", nargs="?", metavar="B", help="default: the files on this box now")
    diff.add_argument("--limit", type=positive_int, help="show at most this many changes")
    add_mirror_parser(command("mirror", "the off-site copy of the repository in an S3, B2 or Wasabi bucket"), shared)
    return parser


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """The settings configure takes and change changes."""
    parser.add_argument("--source", dest="sources", action="append", metavar="PATH",
                        help="a folder or file to back up (repeatable; replaces the list)")
    parser.add_argument("--exclude", action="append", metavar="PATTERN",
                        help="a borg exclude pattern (repeatable; replaces the list)")
    parser.add_argument("--schedule",
                        help="manual, hourly, daily [HH:MM], weekly [DAY] [HH:MM] or a 5-field cron expression")
    parser.add_argument("--keep", action="append", type=keep_rule, metavar="RULE=COUNT",
                        help="retention, e.g. daily=7 (repeatable; rules not named keep their counts)")
    parser.add_argument("--compression", help="borg compression, e.g. lz4 or zstd,3")
    parser.add_argument("--upload-limit", type=int, metavar="KIB_PER_S",
                        help="cap uploads to a remote repository, in KiB/s (0: no cap)")
    parser.add_argument("--remote-path", help="the borg command on an SSH server (default: borg)")
    parser.add_argument("--append-only", action=argparse.BooleanOptionalAction, default=None,
                        help="the server keeps the repository append-only, so this box does not prune "
                             "(default: on for SSH repositories)")


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
                            help="make this box the one that writes under that prefix (another box's mirror there "
                                 "stops; another repository's mirror there is DELETED)")
        action.add_argument("--replace-object-count", type=int, metavar="N",
                            help="with --take-over: confirm the number of objects of the repository under the "
                                 "prefix that is deleted (the refusal without it says how many)")
    restore = actions.choices["restore"]
    restore.add_argument("--repository", metavar="PATH",
                         help="where the repository goes on this box (default: in backupd's state folder)")
    restore.add_argument("--passphrase-file", metavar="FILE",
                         help="read the repository's passphrase from the first line of FILE (- for stdin)")
    restore.add_argument("--create", action="store_true",
                         help="when the prefix holds no repository, start a new one mirrored there "
                              "(without it, that is an error naming the prefixes that hold one)")
    now = actions.add_parser("now", parents=[shared], help="bring the bucket up to date now and show the progress")
    now.add_argument("--compare-all", action="store_true", help="afterwards compare every file with the bucket")
    now.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    off = actions.add_parser("off", parents=[shared], help="stop mirroring and forget the keys; the bucket stays")
    off.add_argument("--yes", action="store_true", help="without asking for confirmation")


def add_global_options(parser: argparse.ArgumentParser, default_socket: Any, default_json: Any) -> None:
    parser.add_argument(
        "--socket", metavar="PATH", default=default_socket,
        help="backupd's socket (default: $BACKUPD_SOCKET, else /run/backupd/backupd.sock)",
    )
    parser.add_argument("--json", action="store_true", default=default_json, help="print the raw result as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = socket_path(args.socket)
    try:
        return run(args, path)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_ERROR


def _silence_stdout() -> None:
    """The reader of stdout went away (`backupctl jobs | head -1`): drop what is left."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run(args: argparse.Namespace, path: str) -> int:
    report = ErrorReport(bool(args.json))
    try:
        with Client(path, timeout=CALL_TIMEOUT) as client:
            return COMMANDS[args.command](Invocation(args, client, sys.stdout, sys.stderr))
    except RpcError as error:
        report.error(error.code, error.message, error.data, error_details(error))
        return exit_code_of(error.code)
    except UsageError as error:
        report.error("usage", str(error), text=f"backupctl: error: {error}")
        return EXIT_USAGE
    except DaemonUnreachable as error:
        hint = f"Is backupd running and listening on {path}? Choose the socket with --socket or BACKUPD_SOCKET."
        report.error("unreachable", str(error), {"socket": path},
                     [hint, "See why with: systemctl status backupd; journalctl -u backupd"])
        return EXIT_UNREACHABLE
    except TimeoutError:
        report.error("unreachable", f"backupd at {path} did not answer within {CALL_TIMEOUT:.0f} s", {"socket": path},
                     ["See why with: systemctl status backupd; journalctl -u backupd"])
        return EXIT_UNREACHABLE
    except ProtocolError as error:
        report.error("unreachable", f"backupd at {path} sent something that is not msgpack-rpc: {error}",
                     {"socket": path})
        return EXIT_UNREACHABLE
    except RecordError as error:
        report.error("unreachable", f"backupd at {path} answered a record this backupctl cannot read: {error}",
                     {"socket": path})
        return EXIT_UNREACHABLE


@dataclass(frozen=True)
class ErrorReport:
    """An error for people on stderr, or with --json an object on stdout for programs:
    {"error": {"code", "message", "data"}}."""

    as_json: bool

    def error(self, code: str, message: str, data: Mapping[str, Any] | None = None,
              details: Sequence[str] = (), text: str | None = None) -> None:
        if self.as_json:
            print(to_json({"error": {"code": str(code), "message": message, "data": dict(data or {})}}),
                  file=sys.stdout, flush=True)
            return
        print(text or f"error: {code}: {message}", file=sys.stderr)
        for line in details:
            print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
