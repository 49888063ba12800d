"""Constructors for the daemon's typed errors, so every module raises them the same way."""

from __future__ import annotations

from typing import Any

from backupctl.protocol import ErrorCode, RpcError


def invalid_params(param: str, message: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, message, {"param": param})


def not_configured() -> RpcError:
    return RpcError(ErrorCode.NOT_CONFIGURED, "Backups are not configured yet: call configure first")


def no_sources() -> RpcError:
    return RpcError(ErrorCode.NOT_CONFIGURED, "Nothing to back up: no sources are configured. "
                    "Configure the folders to back up first.", {"param": "sources"})


def busy(job: dict[str, Any]) -> RpcError:
    return RpcError(
        ErrorCode.BUSY, f"Another operation is running: {job['kind']} job {job['id']}", {"job": job}
    )


def not_found(what: str) -> RpcError:
    return RpcError(ErrorCode.NOT_FOUND, f"No such {what}")


def not_in_snapshot(snapshot: str, missing: list[str], holds: list[str]) -> RpcError:
    return RpcError(
        ErrorCode.NOT_FOUND,
        f"Snapshot {snapshot} does not hold {', '.join(missing)}; it holds {', '.join(holds)}",
        {"param": "paths", "missing": missing},
    )
