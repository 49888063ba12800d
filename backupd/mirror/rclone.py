"""rclone's argv, one pure function per use, and running it: environment, ``--use-json-log``
lines into progress and errors, the upload limit, the limit on a time without progress,
graceful stop.

The remote is never written into a file or argv: its settings, the secret key included, go in
``RCLONE_CONFIG_MIRROR_*`` variables of rclone's environment, which only its own user can read.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from backupd.borg.process import ChildProcess
from backupd.borg.lines import LineSplitter
from backupd.capabilities import Capability
from backupd.jobs import job_log
from backupd.mirror.errors import RcloneFailed, RcloneStalled
from backupd.redaction import redact

RCLONE = "rclone"
# A local repository may belong to another user: rclone reads (and a download writes) it as root.
REPOSITORY_ACCESS = frozenset({Capability.DAC_OVERRIDE})
# The daemon retries a failed mirror with back-off; rclone itself retries each request a little,
# and gives up on a connection it cannot open in a few seconds.
COMMON_OPTIONS = (
    "--config=",  # no configuration file: the remote comes from the environment only
    "--use-json-log",
    "--stats=1s",
    "--stats-log-level=NOTICE",
    "--retries=1",
    "--low-level-retries=3",
    "--contimeout=10s",
    "--ask-password=false",
)
# rclone that reports no progress for this long is stopped: the storage service stopped answering.
STALL_SECONDS = 120.0
# rclone's own limit for a connection on which nothing moves (--timeout) is longer than the stall
# limit: a request it gave up on and sent again would refill the socket buffers, counted as new
# bytes, and hide the stall. It still ends a connection that hangs while the others go on.
IO_IDLE_MARGIN_SECONDS = 60
PROGRESS_FIELDS = ("bytes", "transfers", "checks", "deletes", "renames")
# borg's lock of the repository is the daemon's and this box's: it never goes off-site.
LOCK_FILES = ("--exclude=/lock.exclusive/**", "--exclude=/lock.roster")
# Where Go looks for certificate authorities: a self-hosted S3 service may have its own.
CERTIFICATE_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")
KEPT_ERRORS = 20
STOP_GRACE_SECONDS = 5.0
_READ_SIZE = 65536
_PLAIN_LOG_TIME = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ")


@dataclass(frozen=True)
class RcloneCommand:
    args: tuple[str, ...]
    capabilities: frozenset[Capability] = frozenset()
    uploads: bool = False  # the upload limit applies


@dataclass(frozen=True)
class TransferStats:
    bytes: int
    total_bytes: int
    transfers: int
    total_transfers: int
    deletes: int
    eta: float | None
    speed: float


@dataclass(frozen=True)
class RcloneResult:
    stdout: str
    stats: TransferStats | None


def list_folder(remote_folder: str) -> RcloneCommand:
    """The entries right below a remote folder (a bucket's top: it fails when the bucket does not exist)."""
    return RcloneCommand(("lsjson", "--max-depth=1", remote_folder))


def touch(remote_file: str) -> RcloneCommand:
    return RcloneCommand(("touch", remote_file), uploads=True)


def delete_file(remote_file: str) -> RcloneCommand:
    return RcloneCommand(("deletefile", remote_file))


def delete_all(remote_folder: str) -> RcloneCommand:
    """Every file under a remote folder (another repository's mirror being taken over)."""
    return RcloneCommand(("delete", remote_folder))


def read_file(remote_file: str) -> RcloneCommand:
    """A small remote file on stdout (the first 64 KiB)."""
    return RcloneCommand(("cat", "--count=65536", remote_file))


def upload_listed(repository: str, remote: str, list_file: str) -> RcloneCommand:
    """Upload the listed files (paths relative to the repository) in parallel, each compared by
    size and hash first and sent only when it differs."""
    return RcloneCommand(("copy", repository, remote, f"--files-from-raw={list_file}", "--checksum", "--no-traverse"),
                         REPOSITORY_ACCESS, uploads=True)


def upload_one(repository: str, remote: str, path: str) -> RcloneCommand:
    """Upload one file the bucket lacks; rclone verifies its hash once it is up."""
    return RcloneCommand(("copyto", f"{repository}/{path}", f"{remote}/{path}", "--no-check-dest"),
                         REPOSITORY_ACCESS, uploads=True)


def upload_root_files(staged_root: str, remote: str) -> RcloneCommand:
    """The copied root files, the new index among them, compared by hash; then, only if all went
    up, the older index, hints and integrity files are deleted from the bucket."""
    borg_names = ("/config", "/nonce", "/README", "/transactions", "/index.*", "/hints.*", "/integrity.*")
    return RcloneCommand(("sync", staged_root, remote, "--checksum", *(f"--include={name}" for name in borg_names)),
                         uploads=True)


def remote_hashes(remote: str, list_file: str) -> RcloneCommand:
    """The MD5 of the listed objects, as ``hash  path`` lines (an empty hash where none is known)."""
    return RcloneCommand(("md5sum", remote, f"--files-from-raw={list_file}"))


def compare_all(repository: str, remote: str, report_file: str) -> RcloneCommand:
    """Compare the size and hash of every repository file with the bucket's, each file's
    verdict written to report_file (``= path`` same, ``* path`` differs, ``- path`` missing)."""
    return RcloneCommand(("check", repository, remote, "--one-way", "--download=false", f"--combined={report_file}",
                          *LOCK_FILES), REPOSITORY_ACCESS)


def parse_hashes(stdout: str) -> dict[str, str]:
    """md5sum's ``hash  path`` lines as path -> hash; a path without a known hash is left out."""
    hashes = {}
    for line in stdout.splitlines():
        digest, separator, path = line.partition("  ")
        if separator and re.fullmatch(r"[0-9a-f]{32}", digest):
            hashes[path] = digest
    return hashes


def parse_comparison(report: str) -> tuple[str, ...]:
    """The paths a ``check --combined`` report says differ from the bucket's or could not be compared
    (a missing one is simply uploaded)."""
    return tuple(line[2:] for line in report.splitlines() if line[:2] in ("* ", "! "))


def rclone_environment(remote_settings: Mapping[str, str]) -> dict[str, str]:
    """rclone's whole environment: a search path, a locale, the operator's certificate
    authorities if set, and the remote. Nothing else of the daemon's own: AWS_* or RCLONE_*
    variables of the service would change what rclone does."""
    kept = {name: os.environ[name] for name in CERTIFICATE_VARIABLES if os.environ.get(name)}
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        **kept,
        **remote_settings,
    }


def argv(command: RcloneCommand, upload_limit_kib: int = 0, rclone: str = RCLONE,
         stall_seconds: float = STALL_SECONDS) -> list[str]:
    limit = (f"--bwlimit={upload_limit_kib}k:off",) if command.uploads and upload_limit_kib else ()
    io_idle = f"--timeout={math.ceil(stall_seconds) + IO_IDLE_MARGIN_SECONDS}s"
    return [rclone, *command.args, *COMMON_OPTIONS, io_idle, *limit]


async def run_rclone(
    command: RcloneCommand,
    remote_settings: Mapping[str, str],
    secrets: tuple[str, ...],
    *,
    upload_limit_kib: int = 0,
    on_stats: Callable[[TransferStats], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    rclone: str = RCLONE,
    stall_seconds: float = STALL_SECONDS,
) -> RcloneResult:
    """Run rclone to completion, or raise RcloneFailed with its exit code and error messages;
    RcloneStalled when it reported no progress for ``stall_seconds`` and was stopped.
    A cancelled caller stops rclone (SIGTERM, then SIGKILL) and reaps it first."""
    output = _RcloneOutput(on_stats, stall_seconds)
    process = ChildProcess(argv(command, upload_limit_kib, rclone, stall_seconds),
                           rclone_environment(remote_settings), None, (), command.capabilities)
    if on_start is not None:
        on_start(process.pid)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output.read_stdout, process.stdout)
            nursery.start_soon(output.read_stderr, process.stderr)
            with output.stall.scope:
                await process.wait()
            if output.stall.reached:
                _log_stall(command, stall_seconds)
                await _stop(process)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                await _stop(process)
            for stream in (process.stdout, process.stderr):
                await stream.aclose()
    output.finish()
    exit_code = process.returncode
    assert exit_code is not None
    errors = [redact(message, secrets) for message in output.errors]
    if output.stall.reached and exit_code != 0:
        raise RcloneStalled(exit_code, errors, stall_seconds)
    if exit_code != 0:
        raise RcloneFailed(exit_code, errors)
    return RcloneResult(bytes(output.stdout).decode("utf-8", errors="replace"), output.stats)


def _log_stall(command: RcloneCommand, stall_seconds: float) -> None:
    write_log = job_log()
    if write_log is not None:
        write_log("WARNING", f"rclone {command.args[0]} made no progress for {stall_seconds:g} s: stopping it")


def parse_log_line(line: str) -> tuple[str, str, dict[str, Any] | None]:
    """(level, message, stats) of one line of rclone's stderr; a line that is not JSON is an error."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return "error", _PLAIN_LOG_TIME.sub("", line.strip()), None
    stats = record.get("stats")
    message = str(record.get("msg", "")).strip()
    if isinstance(record.get("object"), str) and record["object"]:
        message = f"{record['object']}: {message}"
    return str(record.get("level", "error")), message, stats if isinstance(stats, dict) else None


def transfer_stats(stats: dict[str, Any]) -> TransferStats:
    def number(name: str) -> float:
        value = stats.get(name)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    eta = stats.get("eta")
    return TransferStats(
        bytes=int(number("bytes")),
        total_bytes=int(number("totalBytes")),
        transfers=int(number("transfers")),
        total_transfers=int(number("totalTransfers")),
        deletes=int(number("deletes")),
        eta=float(eta) if isinstance(eta, (int, float)) and not isinstance(eta, bool) else None,
        speed=float(number("speed")),
    )


def progress_marker(stats: Mapping[str, Any]) -> tuple[Any, ...]:
    """What changes in rclone's stats when it gets somewhere: bytes sent or received, files
    transferred, compared, deleted or renamed. Not the totals or the errors: they change when
    the service does not answer too."""
    return tuple(stats.get(name) or 0 for name in PROGRESS_FIELDS)


class StallLimit:
    """The limit on a time without progress: ``scope`` ends a wait for rclone once ``seconds``
    pass with its stats unchanged (or none at all); each change pushes the end back."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.scope = trio.CancelScope(deadline=trio.current_time() + seconds)
        self._progress = progress_marker({})

    def saw(self, stats: Mapping[str, Any]) -> None:
        marker = progress_marker(stats)
        if marker != self._progress:
            self._progress = marker
            self.scope.deadline = trio.current_time() + self.seconds

    @property
    def reached(self) -> bool:
        return self.scope.cancelled_caught


class _RcloneOutput:
    def __init__(self, on_stats: Callable[[TransferStats], None] | None,
                 stall_seconds: float = STALL_SECONDS) -> None:
        self._on_stats = on_stats
        self._lines = LineSplitter()
        self.stdout = bytearray()
        self.errors: deque[str] = deque(maxlen=KEPT_ERRORS)
        self.stats: TransferStats | None = None
        self.stall = StallLimit(stall_seconds)

    async def read_stdout(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(_READ_SIZE):
            self.stdout += chunk

    async def read_stderr(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(_READ_SIZE):
            for line in self._lines.feed(chunk):
                self._handle(line)

    def finish(self) -> None:
        for line in self._lines.flush():
            self._handle(line)

    def _handle(self, line: str) -> None:
        if not line.strip():
            return
        level, message, stats = parse_log_line(line)
        if stats is not None:
            self.stall.saw(stats)
            self.stats = transfer_stats(stats)
            if self._on_stats is not None:
                self._on_stats(self.stats)
        elif level in ("error", "critical", "fatal") and message:
            self.errors.append(message)


async def _stop(process: ChildProcess) -> None:
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_GRACE_SECONDS):
        await process.wait()
        return
    process.send_signal(signal.SIGKILL)
    await process.wait()



def list_files(remote_folder: str) -> RcloneCommand:
    """Every file under a remote folder, with its size; a folder that does not exist lists none."""
    return RcloneCommand(("lsjson", "--recursive", "--files-only", "--no-mimetype", "--no-modtime", "--fast-list",
                          remote_folder))


def find_files_named(remote_folder: str, name: str, depth: int) -> RcloneCommand:
    """The files of this name under a remote folder, at most depth levels down."""
    return RcloneCommand(("lsjson", "--recursive", "--files-only", f"--max-depth={depth}", f"--include={name}",
                          remote_folder))


def read_start(remote_file: str, size: int) -> RcloneCommand:
    """The first bytes of a remote file on stdout."""
    return RcloneCommand(("cat", f"--count={size}", remote_file))


def download_listed(remote: str, folder: str, list_file: str, by_checksum: bool) -> RcloneCommand:
    """Fetch the files a list names (one path a line, relative to remote) that the folder lacks
    or holds otherwise: compared by size (segments, which borg never rewrites) or by hash."""
    compare = "--checksum" if by_checksum else "--size-only"
    return RcloneCommand(("copy", remote, folder, f"--files-from-raw={list_file}", compare), REPOSITORY_ACCESS)
