"""backupctl: the command line of backupd.

Exit codes: 0 success; 1 the daemon answered with an error (or the job failed, or a
confirmation was declined); 2 usage error; 3 the daemon cannot be reached; 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import os
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, TextIO

from backupctl import format as fmt
from backupctl.client import Client, DaemonUnreachable, socket_path
from backupctl.paths import escape_surrogates_in_json, for_json, printable
from backupctl.protocol import ErrorCode, Notification, ProtocolError, RpcError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

PASSPHRASE_VARIABLE = "BACKUPCTL_PASSPHRASE"
CALL_TIMEOUT = 60.0
# While a snapshot runs, backupd sends progress every second; after this long without
# a notification the job is looked up in `jobs` in case its end was missed.
JOB_POLL_INTERVAL = 5.0
PLAIN_PROGRESS_INTERVAL = 2.0
JOBS_LOOKUP_LIMIT = 20
JOBS_SHOWN = 20
JOBS_PAGE_MAX = 200
SNAPSHOTS_PAGE = 1000
LIVE_REFRESH_INTERVAL = 1.0
WARNINGS_MARKER = "!"
WARNINGS_SHOWN = 10
EXAMPLE_PATHS = 10
SHOWN_TO_ADMINS = "shown to admins only"
CONFIRMATION_WORD = "yes"
NOTE_FILE_MODE = 0o600


class UsageError(Exception):
    """The command line or its inputs cannot be used; exit code 2."""


@dataclass(frozen=True)
class Invocation:
    """One run of a command: its options, its connection and where it writes."""

    args: argparse.Namespace
    client: Client
    stdout: TextIO
    stderr: TextIO

    @property
    def as_json(self) -> bool:
        return bool(self.args.json)

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def emit_json(self, value: Any) -> None:
        self.say(to_json(value))


Command = Callable[[Invocation], int]


@dataclass(frozen=True)
class JobOutcome:
    """What a job that succeeded means for people, and whether all is well (exit 0)."""

    text: str
    good: bool = True


DescribeSuccess = Callable[[Mapping[str, Any]], JobOutcome]


def to_json(value: Any, indent: int | None = 2) -> str:
    """JSON text; a path that is not UTF-8 is a string with each such byte as \\udcXX (docs/api.md)."""
    text = json.dumps(for_json(value), indent=indent, ensure_ascii=False, default=_json_fallback)
    return escape_surrogates_in_json(text)


def _json_fallback(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def terminal_width(stream: TextIO) -> int:
    return shutil.get_terminal_size().columns if stream.isatty() else 100


# status


def run_status(invocation: Invocation) -> int:
    overview = invocation.client.call("status")
    if invocation.as_json:
        invocation.emit_json(overview)
        return EXIT_OK
    invocation.say(describe_overview(overview, time.time(), terminal_width(invocation.stdout)))
    return EXIT_OK


def describe_overview(overview: Mapping[str, Any], now: float, width: int = 100) -> str:
    pairs = [("State", str(overview.get("state")))]
    if overview.get("state") == "unconfigured":
        text = fmt.fields(pairs)
        return text + "\nBackups are not configured: run `backupctl configure REPOSITORY` to set them up."
    pairs += [
        ("Repository", str(overview.get("repository"))),
        ("Automatic", describe_automatic(overview, now)),
        ("Last snapshot", describe_last_snapshot(overview.get("last_snapshot"), now)),
        ("Snapshots", f"{overview.get('snapshot_count', 0):,}"),
        ("Total size", fmt.human_size(overview.get("total_size"))),
        ("Files", f"{overview.get('file_count', 0):,}"),
        ("Problem", describe_problem(overview.get("problem"), now)),
    ]
    if "last_check" in overview:
        pairs.append(("Last check", describe_last_check(overview.get("last_check"), now)))
    if overview.get("retention"):
        pairs.append(("Retention", str(overview["retention"])))
    if overview.get("host_key"):
        pairs.append(("Host key", str(overview["host_key"])))
    if overview.get("notify"):
        pairs.append(("Notifications", describe_notify(overview["notify"], now)))
    if overview.get("local_size") is not None:
        pairs.append(("On this disk", fmt.human_size(overview["local_size"])))
    if overview.get("mirror"):
        pairs.append(("Off-site", describe_off_site(overview["mirror"], now)))
    job = overview.get("job")
    if job:
        pairs.append(("Running", describe_running_job(job, now, width - 16)))
    return fmt.fields(pairs)


def describe_off_site(mirror: Mapping[str, Any], now: float) -> str:
    text = f"{mirror.get('location')}, {mirror.get('state')}"
    if mirror.get("last_success"):
        text += f", copied {fmt.relative_time(mirror['last_success'], now)}"
    waiting = mirror.get("snapshots_not_off_site") or 0
    if waiting:
        text += f", {fmt.plural(waiting, 'snapshot')} not yet"
    return text


def describe_automatic(overview: Mapping[str, Any], now: float) -> str:
    schedule = overview.get("schedule")
    text = ("on" if overview.get("automatic") else "off") + (f" ({schedule})" if schedule else "")
    next_run = overview.get("next_run")
    if overview.get("automatic") and next_run is not None:
        text += f", next snapshot {fmt.relative_time(next_run, now)} ({fmt.timestamp(next_run)})"
    return text


def describe_last_snapshot(snapshot: Mapping[str, Any] | None, now: float) -> str:
    if not snapshot:
        return "none yet"
    when = snapshot.get("time")
    return (
        f"{fmt.relative_time(when, now)} ({fmt.timestamp(when)}), took {fmt.duration(snapshot.get('duration'))}\n"
        f"{snapshot.get('name')}\n"
        f"{fmt.plural(snapshot.get('files') or 0, 'file')}, "
        f"{fmt.human_size(snapshot.get('original_size'))} original, "
        f"{fmt.human_size(snapshot.get('deduplicated_size'))} new"
    )


def describe_problem(problem: Mapping[str, Any] | None, now: float) -> str:
    if not problem:
        return "none"
    return f"{problem.get('code')}: {problem.get('message')} (since {fmt.relative_time(problem.get('since'), now)})"


def describe_notify(notify: Mapping[str, Any], now: float) -> str:
    last_sent = notify.get("last_sent")
    sent = f"last sent {fmt.relative_time(last_sent, now)}" if last_sent else "none sent yet"
    if notify.get("ok"):
        return f"working, {sent}"
    return f"failing: {notify.get('last_error')} ({sent})"


def describe_last_check(check: Mapping[str, Any] | None, now: float) -> str:
    if not check:
        return "never"
    return f"{fmt.relative_time(check.get('time'), now)}: {check.get('message')}"


def describe_running_job(job: Mapping[str, Any], now: float, width: int) -> str:
    heading = (
        f"{job_kind(job)} job {job.get('id')} ({job.get('trigger')}), "
        f"started {fmt.relative_time(job.get('started'), now)}"
    )
    line = fmt.progress_line(job.get("progress"), max(width, 40))
    return f"{heading}\n{line}" if line else heading


# configure


def run_configure(invocation: Invocation) -> int:
    args = invocation.args
    params: dict[str, Any] = {"repository": repository_location(args.repository), **setting_params(args)}
    for option in ("encryption", "host_key"):
        value = getattr(args, option)
        if value is not None:
            params[option] = value
    result = configure_with_passphrase(invocation.client, params, args.passphrase_file)
    for warning in result.get("warnings") or ():
        invocation.warn(f"warning: {warning}")
    if invocation.as_json:
        invocation.emit_json(result)
        return EXIT_OK
    count = fmt.plural(result.get("snapshot_count", 0), "snapshot")
    if result.get("created"):
        invocation.say(f"Created a new repository at {params['repository']} ({count}).")
    else:
        invocation.say(f"Connected to the existing repository at {params['repository']} ({count}).")
    invocation.say(describe_configured(invocation.client.call("status"), invocation.client.call("config")))
    return EXIT_OK


def configure_with_passphrase(client: Client, params: dict[str, Any], passphrase_file: str | None) -> dict[str, Any]:
    """Configure; a passphrase typed at a prompt is asked once to connect, and again only to create."""
    if passphrase_file is not None or os.environ.get(PASSPHRASE_VARIABLE) or not sys.stdin.isatty():
        return client.call("configure", {**params, "passphrase": read_passphrase(passphrase_file)})
    passphrase = _prompt_passphrase(repeat=False)
    try:
        return client.call("configure", {**params, "passphrase": passphrase, "create": False})
    except RpcError as error:
        if error.code != ErrorCode.REPOSITORY_NOT_FOUND:
            raise
    print(f"There is no repository at {params['repository']} yet: a new one will be created.", file=sys.stderr)
    if _ask_passphrase("Repeat the passphrase: ") != passphrase:
        raise UsageError("the passphrases do not match")
    return client.call("configure", {**params, "passphrase": passphrase})


def setting_params(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line of configure or change."""
    params: dict[str, Any] = {}
    if args.sources:
        params["sources"] = [os.path.abspath(source) for source in args.sources]
    if args.exclude:
        params["exclude"] = list(args.exclude)
    if args.keep:
        params["keep"] = dict(args.keep)
    if args.append_only is not None:
        params["append_only"] = args.append_only
    for option in ("schedule", "compression", "remote_path", "upload_limit"):
        value = getattr(args, option)
        if value is not None:
            params[option] = value
    return params


# change


def run_change(invocation: Invocation) -> int:
    params = setting_params(invocation.args)
    if invocation.args.no_exclude:
        if "exclude" in params:
            raise UsageError("--exclude and --no-exclude cannot go together")
        params["exclude"] = []
    if not params:
        raise UsageError("name at least one setting to change (see backupctl change --help)")
    config = invocation.client.call("change", params)
    if invocation.as_json:
        invocation.emit_json(config)
        return EXIT_OK
    invocation.say(f"Changed {', '.join(sorted(params))}.")
    invocation.say(describe_config(config))
    return EXIT_OK


def describe_configured(overview: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    if not config.get("sources"):
        return ("Nothing will be backed up: no folders are configured. Restores work; name the folders "
                "with `backupctl change --source PATH` to take snapshots.")
    folders = fmt.plural(len(config["sources"]), "folder")
    if overview.get("automatic"):
        return f"Backups are configured: {folders}, automatic snapshots {config.get('schedule')}."
    return f"Backups are configured: {folders}, snapshots only when asked for (backupctl snapshot)."


def repository_location(location: str) -> str:
    """Local relative paths become absolute; remote locations (with a colon) stay as typed."""
    if ":" in location or os.path.isabs(location):
        return location
    return os.path.abspath(location)


def keep_rule(text: str) -> tuple[str, int]:
    rule, separator, count = text.partition("=")
    if not separator or not rule or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected RULE=COUNT such as daily=7, got {text!r}")
    return rule, int(count)


def read_passphrase(passphrase_file: str | None) -> str:
    """From the file (- for stdin), else $BACKUPCTL_PASSPHRASE, else a prompt."""
    if passphrase_file is not None:
        return _passphrase_from_file(passphrase_file)
    from_environment = os.environ.get(PASSPHRASE_VARIABLE)
    if from_environment:
        return from_environment
    return _prompt_passphrase()


def _passphrase_from_file(path: str) -> str:
    try:
        if path == "-":
            text = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.readline()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UsageError(f"cannot read the passphrase file {path}: {reason}") from None
    passphrase = text.rstrip("\r\n")
    if not passphrase:
        raise UsageError(f"the passphrase file {path} is empty")
    return passphrase


def _prompt_passphrase(repeat: bool = True) -> str:
    if not sys.stdin.isatty():
        passphrase = sys.stdin.readline().rstrip("\r\n")
        if not passphrase:
            raise UsageError(
                f"no passphrase: use --passphrase-file, set {PASSPHRASE_VARIABLE} or run in a terminal"
            )
        return passphrase
    passphrase = _ask_passphrase("Repository passphrase: ")
    if not passphrase:
        raise UsageError("the passphrase must not be empty")
    if repeat and _ask_passphrase("Repeat the passphrase: ") != passphrase:
        raise UsageError("the passphrases do not match")
    return passphrase


def _ask_passphrase(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise UsageError("no passphrase given") from None


# snapshot, check and restore: jobs followed to their end


class ProgressDisplay:
    """Progress of one job on stderr: a line redrawn in place on a terminal, otherwise
    plain lines at most every PLAIN_PROGRESS_INTERVAL seconds."""

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.live = stream.isatty()
        self._last_plain: float | None = None
        self._drawn = False

    def show(self, progress: Mapping[str, Any] | None) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size().columns - 1 if self.live else None
        line = fmt.progress_line(progress, width)
        if not line:
            return
        if self.live:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
            self._drawn = True
            return
        now = time.monotonic()
        if self._last_plain is None or now - self._last_plain >= PLAIN_PROGRESS_INTERVAL:
            self._last_plain = now
            print(line, file=self.stream, flush=True)

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def run_snapshot(invocation: Invocation) -> int:
    return run_job(invocation, "snapshot", describe_snapshot_result)


def run_check(invocation: Invocation) -> int:
    return run_job(invocation, "check", describe_check_result)


def run_job(
    invocation: Invocation, method: str, describe_success: DescribeSuccess, params: dict[str, Any] | None = None
) -> int:
    """Start a job with `method`; unless --no-wait, follow its progress until it ends."""
    client = invocation.client
    if invocation.args.no_wait:
        job = client.call(method, params)
        if invocation.as_json:
            invocation.emit_json(job)
        else:
            invocation.say(job["id"])
        return EXIT_OK
    # Subscribing first means no notification about the new job can be missed.
    client.call("subscribe")
    job = client.call(method, params)
    title = str(job.get("kind", method)).capitalize()
    display = ProgressDisplay(invocation.stderr, enabled=not invocation.as_json or invocation.stderr.isatty())
    if not invocation.as_json:
        invocation.warn(f"{title} job {job['id']} {'started' if job['state'] == 'running' else job['state']}.")
    try:
        finished = follow_job(client, job, display.show)
    except KeyboardInterrupt:
        display.clear()
        invocation.warn(
            f"\nStopped watching. The {job.get('kind', method)} goes on in backupd; "
            f"stop it with `backupctl cancel {job['id']}`."
        )
        raise
    display.clear()
    return report_finished_job(invocation, finished, describe_success)


ShowProgress = Callable[[Mapping[str, Any]], None]


def follow_job(client: Client, job: Mapping[str, Any], on_progress: ShowProgress) -> dict[str, Any]:
    """Wait for the job to end, showing its progress; return its final record."""
    if job["state"] != "running":
        return dict(job)
    job_id = job["id"]
    on_progress(job.get("progress"))
    client.set_timeout(JOB_POLL_INTERVAL)
    while True:
        try:
            for notification in client.events():
                if notification.params.get("id") != job_id:
                    continue
                if notification.method == "job.progress":
                    on_progress(notification.params.get("progress"))
                elif notification.method == "job.finished":
                    return notification.params
        except TimeoutError:
            record = find_job(client, job_id)
            if record is not None and record["state"] != "running":
                return record
            continue
        raise DaemonUnreachable(f"backupd closed the connection while job {job_id} ran")


def find_job(client: Client, job_id: str) -> dict[str, Any] | None:
    for record in client.paged("jobs", "jobs", {"limit": JOBS_LOOKUP_LIMIT}):
        if record.get("id") == job_id:
            return record
    return None


def report_finished_job(
    invocation: Invocation, job: Mapping[str, Any], describe_success: DescribeSuccess
) -> int:
    if invocation.as_json:
        invocation.emit_json(job)
    if not invocation.as_json:
        for line in warning_lines(job):
            invocation.warn(line)
    if job.get("state") != "succeeded":
        error = job.get("error") or {}
        code = error.get("code", job.get("state"))
        message = error.get("message", f"the {job.get('kind')} did not succeed")
        invocation.warn(f"error: {code}: {message}")
        for line in ssh_lines(error.get("data") or {}):
            invocation.warn(line)
        return exit_code_of(code)
    outcome = describe_success(job)
    if not invocation.as_json:
        invocation.say(outcome.text)
    return EXIT_OK if outcome.good else EXIT_ERROR


def warning_lines(job: Mapping[str, Any]) -> list[str]:
    """borg's warnings about a job, the first few, then how to see them all."""
    result = job.get("result")
    warnings = (result.get("warnings") or []) if isinstance(result, Mapping) else []
    lines = [f"warning: {warning}" for warning in warnings[:WARNINGS_SHOWN]]
    total = max(len(warnings), result.get("warning_count") or 0) if warnings else 0
    if total > len(lines):
        lines.append(f"warning: ... and {total - len(lines):,} more: `backupctl log {job.get('id')}` lists them")
    return lines


def job_duration(job: Mapping[str, Any]) -> str:
    return fmt.duration((job.get("finished") or 0) - (job.get("started") or 0))


def describe_snapshot_result(job: Mapping[str, Any]) -> JobOutcome:
    snapshot = (job.get("result") or {}).get("snapshot")
    took = job_duration(job)
    if not snapshot:
        return JobOutcome(f"Snapshot job {job.get('id')} succeeded in {took}.")
    return JobOutcome(
        f"Snapshot {snapshot.get('name')} taken in {took}: "
        f"{fmt.plural(snapshot.get('files') or 0, 'file')}, "
        f"{fmt.human_size(snapshot.get('original_size'))} original, "
        f"{fmt.human_size(snapshot.get('deduplicated_size'))} new."
    )


def describe_check_result(job: Mapping[str, Any]) -> JobOutcome:
    result = job.get("result") or {}
    took = job_duration(job)
    if result.get("ok", True):
        return JobOutcome(f"Check done in {took}: no problems found.")
    errors = [f"  {error}" for error in result.get("errors") or []]
    return JobOutcome("\n".join([f"Check done in {took}: the repository is damaged.", *errors[-10:]]), good=False)


def run_restore(invocation: Invocation) -> int:
    """Show what the restore would change (a dry run), then, once confirmed, restore."""
    client = invocation.client
    params = restore_params(invocation.args)
    plan = dry_run_restore(client, params)
    describe_plan = partial(restore_plan_outcome, client)
    if invocation.args.dry_run or plan["state"] != "succeeded":
        return report_finished_job(invocation, plan, describe_plan)
    show = invocation.warn if invocation.as_json or invocation.args.no_wait else invocation.say
    show(describe_plan(plan).text)
    result = plan["result"]
    question = f"This overwrites {path_list(result['targets'], ', ')} with snapshot {result['snapshot']}."
    if not confirmed(invocation, question, "restore"):
        invocation.warn("Nothing was restored.")
        return EXIT_ERROR
    # By name: a snapshot taken since the dry run must not become "the newest" in its place.
    params["snapshot"] = result["snapshot"]
    return run_job(invocation, "restore", describe_restore_result, params)


def restore_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.snapshot is not None:
        params["snapshot"] = args.snapshot
    if args.paths:
        params["paths"] = [os.path.abspath(path) for path in args.paths]
    if args.remove_excluded:
        params["remove_excluded"] = True
    return params


def dry_run_restore(client: Client, params: Mapping[str, Any]) -> dict[str, Any]:
    """The finished dry-run job, whose result says what the restore would write, replace and remove."""
    # The answer comes once borg has listed the snapshot, which may take longer than CALL_TIMEOUT.
    client.set_timeout(None)
    try:
        return client.call("restore", {**params, "dry_run": True, "wait": True})
    finally:
        client.set_timeout(CALL_TIMEOUT)


def restore_plan_outcome(client: Client, job: Mapping[str, Any]) -> JobOutcome:
    plan = job.get("result") or {}
    taken = snapshot_time(client, plan.get("snapshot"))
    return JobOutcome(describe_restore_plan(plan, taken, time.time()))


def snapshot_time(client: Client, name: str | None) -> float | None:
    for entry in client.paged("snapshots", "snapshots"):
        if entry.get("name") == name:
            return entry.get("time")
    return None


def describe_restore_plan(plan: Mapping[str, Any], taken: float | None, now: float) -> str:
    written, replaced, removed, kept = (plan.get(change) or {} for change in ("written", "replaced", "removed", "kept"))
    pairs = [
        ("Snapshot", f"{plan.get('snapshot')}, taken {fmt.timestamp(taken)} ({fmt.relative_time(taken, now)})"),
        ("Targets", path_list(plan.get("targets") or [], "\n")),
        ("Written", f"{fmt.plural(written.get('count', 0), 'file')} missing now"),
        ("Replaced", f"{fmt.plural(replaced.get('count', 0), 'file')} changed since the snapshot"),
        ("Removed", f"{fmt.plural(removed.get('count', 0), 'file')} not in the snapshot"),
        ("Kept", f"{fmt.plural(kept.get('count', 0), 'item')} the snapshot excluded"),
        ("Unchanged", fmt.plural(plan.get("unchanged", 0), "file")),
        ("To write", fmt.human_size(plan.get("bytes"))),
        *(("Room", f"{fmt.human_size(room.get('free'))} free on {room.get('mount_point') or 'its file system'}"
                   + ("" if room.get("needed", 0) <= room.get("free", 0) else ": NOT ENOUGH, nothing will be restored"))
          for room in plan.get("space") or []),
    ]
    sections = [fmt.fields(pairs)]
    for title, changes in (("Files to replace", replaced), ("Files to remove", removed), ("Files kept", kept)):
        if changes.get("count"):
            sections.append(f"{title}:\n" + fmt.examples(changes.get("paths") or [], changes["count"], EXAMPLE_PATHS))
    return "\n".join(sections)


def describe_restore_result(job: Mapping[str, Any]) -> JobOutcome:
    result = job.get("result") or {}
    return JobOutcome(
        f"Restored snapshot {result.get('snapshot')} in {job_duration(job)}: "
        f"{fmt.human_size(result.get('bytes'))} written to {path_list(result.get('targets') or [], ', ')}."
    )


def confirmed(invocation: Invocation, question: str, action: str) -> bool:
    """True with --yes, or when the person at the terminal types yes."""
    if invocation.args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"stdin is not a terminal to confirm on: pass --yes to {action}")
    invocation.stderr.write(f"{question} Type {CONFIRMATION_WORD} to continue: ")
    invocation.stderr.flush()
    return sys.stdin.readline().strip().lower() == CONFIRMATION_WORD


# reset, export-key


def run_reset(invocation: Invocation) -> int:
    repository = invocation.client.call("status").get("repository")
    show = invocation.warn if invocation.as_json else invocation.say
    show(describe_reset(repository))
    if not confirmed(invocation, "This resets backups on this box.", "reset"):
        invocation.warn("Nothing was reset.")
        return EXIT_ERROR
    result = invocation.client.call("reset")
    if invocation.as_json:
        invocation.emit_json(result)
        return EXIT_OK
    kept = f" The repository at {repository} is still there." if repository else ""
    invocation.say(f"Backups are reset to the defaults.{kept}")
    return EXIT_OK


def describe_reset(repository: str | None) -> str:
    where = f" at {repository}" if repository else ""
    return (
        "Reset returns backups on this box to the defaults:\n"
        "  - the configuration goes back to the defaults and automatic backups stop;\n"
        "  - the passphrase and borg's local cache are erased from this box.\n"
        f"The repository{where} and its snapshots are NOT deleted: configuring\n"
        "the same location with the same passphrase connects to them again."
    )


def run_export_key(invocation: Invocation) -> int:
    exported = invocation.client.call("export_key")
    content = to_json(exported) if invocation.as_json else str(exported["note"]).rstrip("\n")
    output = invocation.args.output
    if output is None:
        invocation.say(content)
        return EXIT_OK
    try:
        write_new_private_file(output, content + "\n")
    except FileExistsError:
        invocation.warn(f"error: {output} already exists; choose another file or remove it first")
        return EXIT_ERROR
    except OSError as error:
        invocation.warn(f"error: cannot write {output}: {error.strerror or error}")
        return EXIT_ERROR
    if not invocation.as_json:
        invocation.say(
            f"Wrote the key of {exported['repository']} with a recovery note to {output}, readable by you only.\n"
            "Keep it, and the passphrase (which it does not contain), somewhere away from this box."
        )
    return EXIT_OK


def run_ssh_key(invocation: Invocation) -> int:
    key = invocation.client.call("ssh_key")
    if invocation.as_json:
        invocation.emit_json(key)
        return EXIT_OK
    invocation.say(
        f"This box's SSH public key:\n  {key['public_key']}\n\n"
        "On the backup server, add this line to the authorized_keys of the account that holds the repository;\n"
        "it lets this key do nothing but add snapshots to its own repository:\n"
        f"  {key['authorized_keys']}"
    )
    return EXIT_OK


def write_new_private_file(path: str, text: str) -> None:
    """Create path, readable and writable by its owner only, in a folder no other user can change;
    an existing file or link is never replaced or followed."""
    folder = os.path.dirname(path) or "."
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check_private_folder(os.fstat(folder_fd), folder)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(os.path.basename(path), flags, NOTE_FILE_MODE, dir_fd=folder_fd)
        with open(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    finally:
        os.close(folder_fd)


def _check_private_folder(info: os.stat_result, folder: str) -> None:
    if info.st_uid not in (0, os.geteuid()):
        raise PermissionError(errno.EPERM, f"the folder {folder} belongs to another user; choose one of your own")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise PermissionError(
            errno.EPERM, f"other users can write the folder {folder} (mode {mode:o}); choose one only you can write"
        )


# snapshots, jobs, cancel


def run_snapshots(invocation: Invocation) -> int:
    snapshots = list(invocation.client.paged("snapshots", "snapshots", {"limit": SNAPSHOTS_PAGE}))
    if invocation.as_json:
        invocation.emit_json(snapshots)
        return EXIT_OK
    if not snapshots:
        invocation.say("No snapshots yet.")
        return EXIT_OK
    now = time.time()
    rows = [
        (str(entry.get("name")), fmt.timestamp(entry.get("time")), fmt.relative_time(entry.get("time"), now))
        for entry in snapshots
    ]
    invocation.say(fmt.table(("NAME", "TIME", "AGE"), rows))
    return EXIT_OK


def run_jobs(invocation: Invocation) -> int:
    wanted = invocation.args.limit if invocation.args.limit is not None else JOBS_SHOWN
    records = list(islice(invocation.client.paged("jobs", "jobs", {"limit": min(wanted, JOBS_PAGE_MAX)}), wanted))
    if invocation.as_json:
        invocation.emit_json(records)
        return EXIT_OK
    if not records:
        invocation.say("No jobs yet.")
        return EXIT_OK
    now = time.time()
    invocation.say(fmt.table(("ID", "KIND", "TRIGGER", "STATE", "STARTED", "DURATION", "ERROR"),
                             [job_row(record, now) for record in records]))
    if any(has_warnings(record) for record in records):
        invocation.say(f"{WARNINGS_MARKER} with warnings: `backupctl log JOB_ID` shows them")
    return EXIT_OK


def has_warnings(job: Mapping[str, Any]) -> bool:
    """borg could not read some files: the snapshot holds everything else."""
    result = job.get("result")
    return isinstance(result, Mapping) and bool(result.get("warnings") or result.get("warning_count"))


def job_row(job: Mapping[str, Any], now: float) -> tuple[str, ...]:
    started = job.get("started")
    ended = job.get("finished") or now
    error = job.get("error") or {}
    return (
        str(job.get("id")),
        job_kind(job),
        str(job.get("trigger")),
        str(job.get("state")) + (WARNINGS_MARKER if has_warnings(job) else ""),
        fmt.timestamp(started),
        fmt.duration(ended - started) if started is not None else fmt.UNKNOWN,
        str(error.get("code", "")),
    )


def job_kind(job: Mapping[str, Any]) -> str:
    """The kind of job, "restore (dry run)" for a restore that only said what it would change."""
    return f"{job.get('kind')} (dry run)" if job.get("dry_run") else str(job.get("kind"))


def run_log(invocation: Invocation) -> int:
    job = invocation.client.call("job", {"id": invocation.args.job_id})
    if invocation.as_json:
        invocation.emit_json(job)
    else:
        invocation.say(describe_job_with_log(job, time.time()))
    return EXIT_OK


def describe_job_with_log(job: Mapping[str, Any], now: float) -> str:
    started = job.get("started")
    ended = job.get("finished")
    took = f", took {job_duration(job)}" if ended else ", still running"
    pairs = [
        ("Job", f"{job_kind(job)} job {job.get('id')} ({job.get('trigger')})"),
        ("State", str(job.get("state"))),
        ("Started", f"{fmt.timestamp(started)} ({fmt.relative_time(started, now)}){took}"),
    ]
    error = job.get("error")
    if error:
        pairs.append(("Error", f"{error.get('code')}: {error.get('message')}"))
    result = job.get("result") or {}
    snapshot = result.get("snapshot") if job.get("kind") == "snapshot" else None
    if snapshot:
        pairs.append(("Snapshot", f"{snapshot.get('name')}: {fmt.plural(snapshot.get('files') or 0, 'file')}, "
                                  f"{fmt.human_size(snapshot.get('original_size'))} original, "
                                  f"{fmt.human_size(snapshot.get('deduplicated_size'))} new"))
    if result.get("warning_count"):
        shown = len(result.get("warnings") or [])
        pairs.append(("Warnings", f"borg reported {fmt.plural(result['warning_count'], 'warning')}"
                                  f" ({shown} listed in the result); what it could not read is not in the snapshot"))
    if job.get("log", []) is None:
        return "\n".join([fmt.fields(pairs), f"Log: {SHOWN_TO_ADMINS}"])
    log = job.get("log") or []
    counts = [fmt.plural(len(log), "line")]
    for level in ("warning", "error"):
        if count := sum(1 for line in log if line.get("level") == level):
            counts.append(fmt.plural(count, level))
    return "\n".join([fmt.fields(pairs), f"Log ({', '.join(counts)}):", *map(describe_log_line, log)])


def describe_log_line(line: Mapping[str, Any]) -> str:
    """"  2024-05-01 14:03:22  warning  message", further lines of the message indented below it."""
    heading = f"  {fmt.timestamp(line.get('time'))}  {str(line.get('level')):<7}  "
    first, *rest = str(line.get("message")).strip("\n").splitlines() or [""]
    return "\n".join([heading + first, *(" " * len(heading) + more for more in rest)])


def run_cancel(invocation: Invocation) -> int:
    job_id = invocation.args.job_id
    result = invocation.client.call("cancel", {"job": job_id})
    if invocation.as_json:
        invocation.emit_json(result)
    elif result.get("state", "running") != "running":
        invocation.say(f"Job {job_id} already finished ({result['state']}); nothing to cancel.")
    else:
        invocation.say(f"Cancelling job {job_id}.")
    return EXIT_OK


# watch, ping, config


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


class LiveScreen:
    """A block of lines on a terminal, redrawn in place; lines are cut to the width so none wraps."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._height = 0

    def draw(self, text: str) -> None:
        width = max(shutil.get_terminal_size().columns - 1, 20)
        lines = [line[:width] for line in text.splitlines()]
        up = f"\x1b[{self._height}A\r" if self._height else "\r"
        self.stream.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.stream.flush()
        self._height = len(lines)

    def __enter__(self) -> LiveScreen:
        self.stream.write("\x1b[?25l")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stream.write("\x1b[?25h")
        self.stream.flush()


def watch_live(invocation: Invocation) -> int:
    """The overview, redrawn at every notification and every second (for the relative times)."""
    client = invocation.client
    overview = client.call("status")
    client.set_timeout(LIVE_REFRESH_INTERVAL)
    with LiveScreen(invocation.stdout) as screen:
        while True:
            screen.draw(describe_live_overview(overview, client.path, time.time(), terminal_width(invocation.stdout)))
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


def describe_live_overview(overview: Mapping[str, Any], path: str, now: float, width: int) -> str:
    heading = f"backupd at {path}, {fmt.clock(now)} (Ctrl-C to stop)"
    pairs = [("State", str(overview.get("state")))]
    if overview.get("state") != "unconfigured":
        job = overview.get("job")
        last = (describe_last_snapshot(overview.get("last_snapshot"), now).splitlines() or [""])[0]
        pairs += [
            ("Job", describe_running_job(job, now, width - 16) if job else "none running"),
            ("Automatic", describe_automatic(overview, now)),
            ("Last snapshot", last),
            ("Snapshots", f"{overview.get('snapshot_count', 0):,}, {fmt.human_size(overview.get('total_size'))}"),
            ("Problem", describe_problem(overview.get("problem"), now)),
        ]
    notify = overview.get("notify")
    if notify and not notify.get("ok"):
        pairs.append(("Notifications", describe_notify(notify, now)))
    return heading + "\n" + fmt.fields(pairs)


def describe_notification(notification: Notification, now: float, width: int = 100) -> str:
    params = notification.params
    method = notification.method
    if method == "status.changed":
        summary = describe_status_change(params, now)
    elif method.startswith("job."):
        summary = describe_job_event(method, params, width - 40)
    else:
        summary = to_json(params, indent=None)
    return f"{fmt.clock(now)}  {method:<15} {summary}"


def describe_job_event(method: str, job: Mapping[str, Any], width: int) -> str:
    name = f"{job_kind(job)} job {job.get('id')}"
    if method == "job.started":
        return f"{name} started ({job.get('trigger')})"
    if method == "job.progress":
        return f"{name}: {fmt.progress_line(job.get('progress'), max(width, 40))}"
    if method == "job.finished":
        took = job_duration(job)
        error = job.get("error")
        if error:
            return f"{name} {job.get('state')} after {took}: {error.get('code')}: {error.get('message')}"
        with_warnings = f", with warnings (`backupctl log {job.get('id')}`)" if has_warnings(job) else ""
        return f"{name} {job.get('state')} in {took}{with_warnings}"
    return f"{name} {job.get('state')}"


def describe_status_change(overview: Mapping[str, Any], now: float) -> str:
    parts = [str(overview.get("state")), fmt.plural(overview.get("snapshot_count") or 0, "snapshot")]
    last = overview.get("last_snapshot")
    if last:
        parts.append(f"last {fmt.relative_time(last.get('time'), now)}")
    problem = overview.get("problem")
    if problem:
        parts.append(f"problem {problem.get('code')}")
    return ", ".join(parts)


def run_ping(invocation: Invocation) -> int:
    started = time.perf_counter()
    answer = invocation.client.call("ping")
    elapsed = time.perf_counter() - started
    if invocation.as_json:
        invocation.emit_json(answer)
    else:
        invocation.say(
            f"backupd {answer.get('version')} (API {answer.get('api')}) at {invocation.client.path} "
            f"answered in {elapsed * 1000:.1f} ms"
        )
    return EXIT_OK


def run_config(invocation: Invocation) -> int:
    config = invocation.client.call("config")
    if invocation.as_json:
        invocation.emit_json(config)
        return EXIT_OK
    invocation.say(describe_config(config))
    return EXIT_OK


def path_list(paths: Sequence[str | bytes], separator: str) -> str:
    """Paths for people: a name's bytes that are not UTF-8 (sent as bin) shown as \\xXX."""
    return separator.join(map(printable, paths))


def path_lines(paths: list[str | bytes] | None) -> str:
    """A list of paths, one a line; the daemon sends readers nil in its place."""
    if paths is None:
        return SHOWN_TO_ADMINS
    return path_list(paths, "\n") or "none"


def describe_config(config: Mapping[str, Any]) -> str:
    repository = config.get("repository")
    keep = config.get("keep") or {}
    pairs = [
        ("Repository", repository or "not configured"),
        ("Passphrase", "set" if config.get("passphrase_set") else "not set"),
        ("Sources", path_lines(config.get("sources", []))),
        ("Exclude", path_lines(config.get("exclude", []))),
        ("Schedule", str(config.get("schedule"))),
        ("Keep", ", ".join(f"{rule} {count}" for rule, count in keep.items()) or "none"),
        ("Encryption", str(config.get("encryption"))),
        ("Compression", str(config.get("compression"))),
        ("Append-only", "yes" if config.get("append_only") else "no"),
        ("Upload cap", describe_upload_limit(config.get("upload_limit"))),
    ]
    text = fmt.fields(pairs)
    if repository is None:
        text = "Backups are not configured; a configure starts from these defaults:\n" + text
    return text


def describe_upload_limit(limit: int | None) -> str:
    if limit is None:
        return "the operator's setting"
    return f"{limit:,} KiB/s" if limit else "none"


# the command line


# ls, versions, diff: looking inside snapshots

PAGE_SIZE = 1000
CHANGE_MARKS = {"added": "+", "removed": "-", "modified": "M"}


def shown_name(name: Any) -> str:
    """A name for people: each byte that is not UTF-8 as \\xXX; a name hidden from readers as -."""
    return "-" if name is None else printable(name if isinstance(name, (str, bytes)) else str(name))


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
    first = listed[0]
    rows = [entry_row(entry) for page in listed for entry in page["entries"]]
    invocation.say(f"{first['snapshot']}:{shown_name(first.get('path'))}  ({fmt.plural(first['total'], 'entry')})")
    if rows:
        invocation.say(fmt.table(("MODE", "OWNER", "SIZE", "MODIFIED", "NAME"), rows))
    if listed[-1].get("cursor") is not None:
        invocation.say(f"... {first['total'] - len(rows)} more (--limit)")
    return EXIT_OK


def entry_row(entry: Mapping[str, Any]) -> tuple[str, ...]:
    name = shown_name(entry.get("name"))
    if entry.get("kind") == "folder" and entry.get("name") is not None:
        name += "/"
    if entry.get("target") is not None:
        name += " -> " + shown_name(entry["target"])
    owner = f"{entry.get('user') or entry.get('uid')}:{entry.get('group') or entry.get('gid')}" if entry.get("mode") else ""
    return (entry.get("mode") or "d?????????", owner,
            fmt.human_size(entry["size"]) if entry.get("size") is not None and entry.get("kind") != "folder" else "",
            fmt.timestamp(entry.get("mtime")) if entry.get("mtime") is not None else "", name)


def run_versions(invocation: Invocation) -> int:
    found = invocation.client.call("versions", {"path": os.path.abspath(invocation.args.path)})
    if invocation.as_json:
        invocation.emit_json(found)
        return EXIT_OK
    invocation.say(f"{shown_name(found['path'])}: in {fmt.plural(len(found['versions']), 'snapshot')}")
    rows = [(str(version["snapshot"]), fmt.timestamp(version.get("time")), str(version.get("kind")),
             fmt.human_size(version.get("size")) if version.get("kind") != "folder" else "",
             fmt.timestamp(version.get("mtime"))) for version in found["versions"]]
    invocation.say(fmt.table(("SNAPSHOT", "TAKEN", "KIND", "SIZE", "MODIFIED"), rows))
    invocation.say(f"Restore one with: backupctl restore --snapshot SNAPSHOT --path {shown_name(found['path'])}")
    return EXIT_OK


def run_diff(invocation: Invocation) -> int:
    args = invocation.args
    params = {"from": args.old} | ({"to": args.new} if args.new is not None else {})
    listed = list(pages(invocation.client, "compare", params, args.limit))
    if invocation.as_json:
        invocation.emit_json({**listed[0], "changes": [change for page in listed for change in page["changes"]],
                              "cursor": listed[-1]["cursor"]})
        return EXIT_OK
    first = listed[0]
    counts = first["counts"]
    invocation.say(f"{first['from']} -> {first['to'] or 'the files now'}: {counts['added']} added, "
                   f"{counts['removed']} removed, {counts['modified']} modified")
    rows = [change_row(change) for page in listed for change in page["changes"]]
    if rows:
        invocation.say(fmt.table(("", "SIZE", "WHAT", "PATH"), rows))
    if listed[-1].get("cursor") is not None:
        invocation.say(f"... {first['total'] - len(rows)} more (--limit)")
    return EXIT_OK


def change_row(change: Mapping[str, Any]) -> tuple[str, ...]:
    size = change.get("size") if change.get("change") != "removed" else change.get("old_size")
    return (CHANGE_MARKS.get(change.get("change", ""), "?"), fmt.human_size(size) if size is not None else "",
            ",".join(change.get("what") or []), shown_name(change.get("path")))


def add_mirror_command(parser: argparse.ArgumentParser, shared: argparse.ArgumentParser) -> None:
    from backupctl.mirror_cli import add_mirror_parser  # it builds on this module

    add_mirror_parser(parser, shared)


def run_mirror_command(invocation: Invocation) -> int:
    from backupctl.mirror_cli import run_mirror

    return run_mirror(invocation)


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
    "mirror": run_mirror_command,
}



def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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
    add_mirror_command(command("mirror", "the off-site copy of the repository in an S3, B2 or Wasabi bucket"), shared)
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
        report.error(error.code, error.message, error.data, _error_details(error))
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


def exit_code_of(code: str) -> int:
    """Bad values of options are usage errors, whether backupctl or backupd finds them."""
    return EXIT_USAGE if code == ErrorCode.INVALID_PARAMS else EXIT_ERROR


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


# What to run, when backupd says something is missing that a command sets.
NEXT_COMMAND = {
    "not_configured": "Run `backupctl configure REPOSITORY` first (see backupctl configure --help).",
}


def _error_details(error: RpcError) -> list[str]:
    lines = []
    if error.code == ErrorCode.NOT_CONFIGURED and error.data.get("param") == "sources":
        lines.append("  Name the folders to back up with `backupctl change --source PATH`.")
    elif error.code in NEXT_COMMAND:
        lines.append("  " + NEXT_COMMAND[error.code])
    if error.code == ErrorCode.INVALID_PARAMS and "param" in error.data:
        lines.append(f"  (option: {error.data['param']})")
    elif error.code == ErrorCode.BUSY and isinstance(error.data.get("job"), dict):
        job = error.data["job"]
        lines.append(f"  (running: {job.get('kind')} job {job.get('id')})")
    lines.extend(f"  borg: {line}" for line in _last_lines(error.data))
    lines.extend(ssh_lines(error.data))
    return lines


def ssh_lines(data: Mapping[str, Any]) -> list[str]:
    """ssh's own words about a link that failed, as the daemon found them."""
    words = data.get("ssh")
    return [f"  ssh: {line}" for line in words] if isinstance(words, list) else []


def _last_lines(data: Mapping[str, Any]) -> Iterator[str]:
    lines = data.get("last_lines")
    if isinstance(lines, list):
        yield from (str(line) for line in lines[-3:])


if __name__ == "__main__":
    sys.exit(main())
