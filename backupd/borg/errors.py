"""Every borg failure, classified in one table: borg msgid and exit code -> stable error code.

Borg 1.4 with ``BORG_EXIT_CODES=modern`` exits with 0 (success), 1 or 100..127 (warnings),
2 (generic error), 3..99 (a specific error, one per msgid below) or 128+N (signal N).
The final ``log_message`` of a failed run names the error in its ``msgid``: the class's
qualified name (``Repository.DoesNotExist``). A remote ``borg serve`` error that the client
does not translate back arrives with its bare class name (``InvalidRepositoryConfig``) and
exit code 2. So the msgid wins and the exit code is the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backupctl.protocol import ErrorCode, RpcError
from backupd.redaction import redact

if TYPE_CHECKING:
    from backupd.borg.log_json import LogMessage
    from backupd.borg.runner import BorgResult

EXIT_SUCCESS = 0
EXIT_WARNING = 1
EXIT_ERROR = 2
EXIT_WARNING_SPECIFIC = range(100, 128)
EXIT_SIGNAL_BASE = 128

LAST_LINES = 10
_MAX_LINE_LENGTH = 2000
_MAX_DETAIL_LENGTH = 300

@dataclass(frozen=True)
class BorgError:
    """One kind of borg failure. ``message`` may use {where} (the repository) and {detail} (borg's words)."""

    msgid: str
    exit_code: int | None
    code: ErrorCode
    message: str


_NOT_FOUND = ErrorCode.REPOSITORY_NOT_FOUND
_EXISTS = ErrorCode.REPOSITORY_EXISTS
_PASSPHRASE = ErrorCode.PASSPHRASE_WRONG
_UNREACHABLE = ErrorCode.REPOSITORY_UNREACHABLE
_LOCKED = ErrorCode.REPOSITORY_LOCKED
_INVALID = ErrorCode.REPOSITORY_INVALID
_FAILED = ErrorCode.BORG_FAILED

BORG_ERRORS: tuple[BorgError, ...] = (
    BorgError("Error", None, _FAILED, "Borg failed: {detail}"),
    BorgError("ErrorWithTraceback", None, _FAILED, "Borg failed: {detail}"),
    BorgError("RTError", None, _FAILED, "Borg failed: {detail}"),
    BorgError("Exception", None, _FAILED, "Borg failed with an unexpected internal error: {detail}"),
    BorgError("Signal.SIGTERM", None, _FAILED, "Borg was stopped by SIGTERM."),
    BorgError("Signal.SIGHUP", None, _FAILED, "Borg was stopped by SIGHUP."),
    BorgError("CancelledByUser", 3, _FAILED, "Borg stopped because a question it asked was answered with no."),
    BorgError("CommandError", 4, _FAILED, "Borg rejected the command: {detail}"),
    BorgError("PlaceholderError", 5, _FAILED, "Borg could not expand a placeholder: {detail}"),
    BorgError("InvalidPlaceholder", 6, _FAILED, "Borg found an invalid placeholder: {detail}"),
    BorgError("Repository.AlreadyExists", 10, _EXISTS, "A repository already exists at {where}."),
    BorgError("Repository.AtticRepository", 11, _INVALID, "The repository at {where} is an Attic repository that must be upgraded first."),
    BorgError("Repository.CheckNeeded", 12, _INVALID, "The repository at {where} is inconsistent and needs a check."),
    BorgError("Repository.DoesNotExist", 13, _NOT_FOUND, "No repository exists at {where}."),
    BorgError("Repository.InsufficientFreeSpaceError", 14, ErrorCode.DISK_FULL, "There is not enough free space for the repository at {where}."),
    BorgError("Repository.InvalidRepository", 15, _INVALID, "{where} is not a valid Borg repository."),
    BorgError("Repository.InvalidRepositoryConfig", 16, _INVALID, "The repository at {where} has an invalid configuration."),
    BorgError("Repository.ObjectNotFound", 17, _INVALID, "Data is missing from the repository at {where}."),
    BorgError("Repository.ParentPathDoesNotExist", 18, _NOT_FOUND, "The folder that should contain the repository {where} does not exist."),
    BorgError("Repository.PathAlreadyExists", 19, _INVALID, "Something that is not a Borg repository is already at {where}."),
    BorgError("Repository.StorageQuotaExceeded", 20, _FAILED, "The repository at {where} has used up its storage quota."),
    BorgError("Repository.PathPermissionDenied", 21, _UNREACHABLE, "Permission to access the repository at {where} was denied."),
    BorgError("MandatoryFeatureUnsupported", 25, _INVALID, "The repository at {where} needs a newer version of Borg."),
    BorgError("NoManifestError", 26, _INVALID, "The repository at {where} has no manifest."),
    BorgError("UnsupportedManifestError", 27, _INVALID, "The repository at {where} needs a newer version of Borg."),
    BorgError("Archive.AlreadyExists", 30, _FAILED, "A snapshot with that name already exists in the repository at {where}."),
    BorgError("Archive.DoesNotExist", 31, ErrorCode.NOT_FOUND, "The snapshot does not exist in the repository at {where}."),
    BorgError("Archive.IncompatibleFilesystemEncodingError", 32, _FAILED, "A file name cannot be encoded on this file system: {detail}"),
    BorgError("KeyfileInvalidError", 40, _INVALID, "The key of the repository at {where} is invalid."),
    BorgError("KeyfileMismatchError", 41, _INVALID, "The key file does not belong to the repository at {where}."),
    BorgError("KeyfileNotFoundError", 42, _FAILED, "No key file was found for the repository at {where}."),
    BorgError("NotABorgKeyFile", 43, _FAILED, "The file is not a Borg key backup."),
    BorgError("RepoKeyNotFoundError", 44, _INVALID, "The repository at {where} holds no key."),
    BorgError("RepoIdMismatch", 45, _FAILED, "The key backup belongs to a different repository than {where}."),
    BorgError("UnencryptedRepo", 46, _FAILED, "The repository at {where} is not encrypted, so it has no key."),
    BorgError("UnknownKeyType", 47, _INVALID, "The repository at {where} uses an unknown key type."),
    BorgError("UnsupportedPayloadError", 48, _INVALID, "The repository at {where} needs a newer version of Borg."),
    BorgError("NoPassphraseFailure", 50, _PASSPHRASE, "The repository at {where} is encrypted and no passphrase was given."),
    BorgError("PasscommandFailure", 51, _PASSPHRASE, "The passphrase command failed for the repository at {where}."),
    BorgError("PassphraseWrong", 52, _PASSPHRASE, "The passphrase is wrong for the repository at {where}."),
    BorgError("PasswordRetriesExceeded", 53, _PASSPHRASE, "The passphrase was not accepted for the repository at {where}."),
    BorgError("Cache.CacheInitAbortedError", 60, _FAILED, "Borg refused to use the unencrypted repository at {where} because it has not used it before."),
    BorgError("Cache.EncryptionMethodMismatch", 61, _FAILED, "The encryption of the repository at {where} changed since Borg last used it; Borg refused to continue."),
    BorgError("Cache.RepositoryAccessAborted", 62, _FAILED, "The repository at {where} was at another location when Borg last used it; Borg refused to continue."),
    BorgError("Cache.RepositoryIDNotUnique", 63, _FAILED, "Borg's cache is newer than the repository at {where}; another repository may have the same ID."),
    BorgError("Cache.RepositoryReplay", 64, _FAILED, "Borg's records are newer than the repository at {where}; it may have been replaced by an older copy."),
    BorgError("LockError", 70, _LOCKED, "The repository at {where} is locked by another Borg process."),
    BorgError("LockErrorT", 71, _LOCKED, "The repository at {where} is locked by another Borg process."),
    BorgError("LockFailed", 72, _LOCKED, "The lock of the repository at {where} could not be taken: {detail}"),
    BorgError("LockTimeout", 73, _LOCKED, "The repository at {where} is locked by another Borg process."),
    BorgError("NotLocked", 74, _FAILED, "The lock of the repository at {where} disappeared while Borg held it."),
    BorgError("NotMyLock", 75, _FAILED, "The lock of the repository at {where} was taken over while Borg held it."),
    BorgError("ConnectionClosed", 80, _UNREACHABLE, "The connection to the repository at {where} was closed."),
    BorgError("ConnectionClosedWithHint", 81, _UNREACHABLE, "The connection to the repository at {where} was closed: {detail}"),
    BorgError("InvalidRPCMethod", 82, _FAILED, "The Borg server of {where} rejected a request: {detail}"),
    BorgError("PathNotAllowed", 83, _UNREACHABLE, "The server does not allow access to the repository at {where}."),
    BorgError("RemoteRepository.RPCServerOutdated", 84, _FAILED, "The Borg version on the server of {where} is too old."),
    BorgError("UnexpectedRPCDataFormatFromClient", 85, _FAILED, "The Borg server of {where} did not understand the client: {detail}"),
    BorgError("UnexpectedRPCDataFormatFromServer", 86, _UNREACHABLE, "The server of {where} did not answer like a Borg server."),
    BorgError("ConnectionBrokenWithHint", 87, _UNREACHABLE, "The connection to the repository at {where} broke: {detail}"),
    BorgError("IntegrityError", 90, _INVALID, "The repository at {where} holds damaged data."),
    BorgError("FileIntegrityError", 91, _FAILED, "A file failed its integrity check: {detail}"),
    BorgError("DecompressionError", 92, _INVALID, "The repository at {where} holds data that cannot be decompressed."),
    BorgError("ArchiveTAMInvalid", 95, _INVALID, "A snapshot in the repository at {where} failed authentication."),
    BorgError("ArchiveTAMRequiredError", 96, _INVALID, "A snapshot in the repository at {where} is not authenticated."),
    BorgError("TAMInvalid", 97, _INVALID, "The manifest of the repository at {where} failed authentication."),
    BorgError("TAMRequiredError", 98, _INVALID, "The manifest of the repository at {where} is not authenticated."),
    BorgError("TAMUnsupportedSuiteError", 99, _INVALID, "The repository at {where} needs a newer version of Borg."),
)

_BY_MSGID = {error.msgid: error for error in BORG_ERRORS}
_BY_EXIT_CODE = {error.exit_code: error for error in BORG_ERRORS if error.exit_code is not None}
# A remote `borg serve` reports nested errors by their bare class name.
_BY_BARE_NAME = {
    error.msgid.rpartition(".")[2]: error
    for error in BORG_ERRORS
    if error.msgid.startswith(("Repository.", "RemoteRepository."))
}


class BorgFailed(RpcError):
    """A borg run that ended with an error; ``result`` holds everything borg reported."""

    def __init__(self, code: str, message: str, data: dict[str, object], result: BorgResult) -> None:
        super().__init__(code, message, data)
        self.result = result


# borg's warnings about one item it could not back up (with BORG_EXIT_CODES=modern each has
# its own exit code, 100 to 107): the snapshot is whole but for that item.
ITEM_WARNING_MSGIDS = frozenset({
    "FileChangedWarning", "BackupWarning", "BackupError", "BackupRaceConditionError", "BackupOSError",
    "BackupPermissionError", "BackupIOError", "BackupFileNotFoundError",
})


# Failures of `borg check` that report damaged repository data rather than a repository
# that could not be opened (wrong passphrase, lock, connection): the check itself has an answer.
DAMAGE_MSGIDS = frozenset({
    "IntegrityError", "FileIntegrityError", "DecompressionError", "Repository.ObjectNotFound",
    "Repository.CheckNeeded", "NoManifestError", "ArchiveTAMInvalid", "TAMInvalid",
})


def found_damage(failure: BorgFailed) -> bool:
    """Whether borg failed because the repository's data is damaged."""
    return failure.data.get("borg_msgid") in DAMAGE_MSGIDS


def is_item_warning(message: LogMessage) -> bool:
    """Whether a log message says that an item is missing from (or changed in) the snapshot."""
    return message.levelname == "WARNING" and message.msgid in ITEM_WARNING_MSGIDS


PERMISSION_REFUSED = "BackupPermissionError"
# "<path>: [Errno 1] ..." or, naming the step that failed, "<path>: attrs: [Errno 1] ...".
_ITEM_WARNING = re.compile(r"^(?P<path>.*?)(?:: [a-z_]+)?: \[Errno \d+\]", re.DOTALL)


def refused_path(message: LogMessage) -> str | None:
    """The archive path of an item borg was refused permission for, from its warning."""
    if message.msgid != PERMISSION_REFUSED or (match := _ITEM_WARNING.match(message.message)) is None:
        return None
    return match["path"]


def is_success(exit_code: int) -> bool:
    """Borg reached the normal end of the operation, possibly with warnings."""
    return exit_code in (EXIT_SUCCESS, EXIT_WARNING) or exit_code in EXIT_WARNING_SPECIFIC


def lookup(exit_code: int, msgids: Sequence[str | None]) -> BorgError | None:
    """The table entry for a failure: the latest known msgid, else the specific exit code."""
    for msgid in reversed(msgids):
        if msgid:
            known = _BY_MSGID.get(msgid) or _BY_BARE_NAME.get(msgid)
            if known is not None:
                return known
    return _BY_EXIT_CODE.get(exit_code)


def classify(exit_code: int, msgids: Sequence[str | None]) -> ErrorCode:
    known = lookup(exit_code, msgids)
    return known.code if known is not None else ErrorCode.BORG_FAILED


def borg_error(
    result: BorgResult,
    *,
    secrets: Sequence[str] = (),
    repository: str | None = None,
) -> BorgFailed:
    """The error to report for a failed borg run, with every secret redacted."""
    msgids = _failure_msgids(result)
    known = lookup(result.exit_code, msgids)
    detail = _detail(result)
    if known is not None:
        message = known.message.format(where=repository or "the configured location", detail=detail)
        code: str = known.code
    else:
        message = _unknown_failure_message(result.exit_code, detail)
        code = ErrorCode.BORG_FAILED
    borg_msgid = known.msgid if known is not None else next((m for m in reversed(msgids) if m), None)
    data: dict[str, object] = {
        "borg_msgid": borg_msgid,
        "exit_code": result.exit_code,
        "last_lines": [
            redact(entry.message, secrets)[:_MAX_LINE_LENGTH] for entry in result.log[-LAST_LINES:]
        ],
    }
    code, message = _ssh_failure(code, message, result, repository)
    code, message = _disk_full(code, message, result, repository)
    return BorgFailed(code, redact(message, secrets), data, result)


def _disk_full(code: str, message: str, result: BorgResult, repository: str | None) -> tuple[str, str]:
    """Borg reports a full disk as a plain OSError; the errno text says which."""
    if code != ErrorCode.BORG_FAILED or not any("No space left on device" in entry.message for entry in result.log):
        return code, message
    where = repository or "the configured location"
    return ErrorCode.DISK_FULL, f"The disk is full: borg could not write to {where} or to its cache. Free some space; the next run retries."


AUTH_FAILED_MESSAGE = (
    "The server at {where} refused this box's SSH key; add the key from `backupctl ssh-key` to its authorized_keys."
)
# What ssh prints, relayed by borg as "Remote: ..." lines, when the link itself was refused.
_HOST_KEY_CHANGED = (
    "The SSH host key of {where} is not the one recorded: nothing was sent. If the server was "
    "reinstalled, check its new key and configure again with its fingerprint."
)
_SSH_FAILURES = (
    ("Host key verification failed", ErrorCode.HOST_KEY_CHANGED, _HOST_KEY_CHANGED),
    ("Permission denied", ErrorCode.AUTH_FAILED, AUTH_FAILED_MESSAGE),
)


def host_key_changed(repository: str) -> RpcError:
    return RpcError(ErrorCode.HOST_KEY_CHANGED, _HOST_KEY_CHANGED.format(where=repository))


def _ssh_failure(code: str, message: str, result: BorgResult, repository: str | None) -> tuple[str, str]:
    if code != ErrorCode.REPOSITORY_UNREACHABLE:
        return code, message
    remote_lines = [entry.message for entry in result.log if entry.message.startswith("Remote: ")]
    for marker, ssh_code, ssh_message in _SSH_FAILURES:
        if any(marker in line for line in remote_lines):
            return ssh_code, ssh_message.format(where=repository or "the configured location")
    return code, message


def _failure_msgids(result: BorgResult) -> list[str | None]:
    errors = [entry.msgid for entry in result.log if entry.is_error]
    return errors or [entry.msgid for entry in result.log]


def _detail(result: BorgResult) -> str:
    """Borg's own words about the failure: the first line of its last error message."""
    errors = [entry for entry in result.log if entry.is_error and entry.message.strip()]
    candidates = errors or [entry for entry in result.log if entry.message.strip()]
    if not candidates:
        return "no details were reported"
    first_line = candidates[-1].message.strip().splitlines()[0]
    return first_line[:_MAX_DETAIL_LENGTH]


def _unknown_failure_message(exit_code: int, detail: str) -> str:
    if exit_code > EXIT_SIGNAL_BASE:
        return f"Borg was stopped by signal {exit_code - EXIT_SIGNAL_BASE}: {detail}"
    return f"Borg failed with exit code {exit_code}: {detail}"
