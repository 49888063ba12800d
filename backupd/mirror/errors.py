"""rclone's exit codes and error messages to the daemon's stable error codes, in one table."""

from __future__ import annotations

import re
from dataclasses import dataclass

from backupctl.protocol import ErrorCode, RpcError

# rclone's documented exit codes.
EXIT_DIRECTORY_NOT_FOUND = 3
EXIT_FILE_NOT_FOUND = 4

# What the services say, by what a person has to do about it. The first row that matches wins.
_KINDS: tuple[tuple[ErrorCode, re.Pattern[str]], ...] = (
    (ErrorCode.AUTH_FAILED, re.compile(
        r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|InvalidToken|ExpiredToken|"
        r"bad_auth_token|unauthorized|status code: 40[13]\b|\b40[13] (Forbidden|Unauthorized)", re.IGNORECASE)),
    (ErrorCode.BUCKET_NOT_FOUND, re.compile(r"NoSuchBucket|bucket (does not exist|not found)", re.IGNORECASE)),
    (ErrorCode.REPOSITORY_UNREACHABLE, re.compile(
        r"connection refused|no such host|dial tcp|i/o timeout|context deadline exceeded|connection reset|"
        r"network is unreachable|TLS handshake|server misbehaving|unexpected EOF|timeout awaiting|broken pipe|"
        r"connection closed|: EOF\b", re.IGNORECASE)),
)
MIRROR_FAILED_REASON_LIMIT = 300


@dataclass
class RcloneFailed(Exception):
    exit_code: int
    errors: list[str]

    def __str__(self) -> str:
        return f"rclone exited with {self.exit_code}: {self.reason()}"

    def reason(self, first: bool = False) -> str:
        """rclone's last (or first) error, in its own words, on one line."""
        if not self.errors:
            if self.exit_code < 0:
                return f"rclone was stopped by signal {-self.exit_code}"
            return f"rclone exited with code {self.exit_code}"
        text = " ".join(self.errors[0 if first else -1].split())
        return text if len(text) <= MIRROR_FAILED_REASON_LIMIT else text[: MIRROR_FAILED_REASON_LIMIT - 3] + "..."


@dataclass
class RcloneStalled(RcloneFailed):
    """rclone was stopped after it reported no progress for ``seconds``: the service stopped answering."""

    seconds: float = 0.0

    def reason(self, first: bool = False) -> str:
        return f"the storage service stopped answering for {self.seconds:g} s"


def error_kind(failure: RcloneFailed) -> ErrorCode:
    if isinstance(failure, RcloneStalled):
        return ErrorCode.REPOSITORY_UNREACHABLE
    text = "\n".join(failure.errors)
    for code, pattern in _KINDS:
        if pattern.search(text):
            return code
    return ErrorCode.MIRROR_FAILED


def mirror_error(failure: RcloneFailed, location: str, listing_bucket: bool = False) -> RpcError:
    """The typed error of a failed rclone run against the bucket at location. A folder that
    is not found while listing the bucket's top means the bucket itself is missing."""
    if isinstance(failure, RcloneStalled):
        return RpcError(ErrorCode.REPOSITORY_UNREACHABLE,
                        f"The storage service of {location} stopped answering for {failure.seconds:g} s",
                        {"exit_code": failure.exit_code})
    code = error_kind(failure)
    if code == ErrorCode.MIRROR_FAILED and listing_bucket and failure.exit_code == EXIT_DIRECTORY_NOT_FOUND:
        code = ErrorCode.BUCKET_NOT_FOUND
    sentence = {
        ErrorCode.AUTH_FAILED: f"The storage service refused the access key for {location}",
        ErrorCode.BUCKET_NOT_FOUND: f"The bucket of {location} does not exist",
        ErrorCode.REPOSITORY_UNREACHABLE: f"The storage service of {location} could not be reached",
    }.get(code, f"Mirroring to {location} failed")
    return RpcError(code, f"{sentence}: {failure.reason()}", {"exit_code": failure.exit_code})
