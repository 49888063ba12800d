"""check in this process: a healthy repository checks clean; damage becomes the overview's
problem, and a check that finds none again clears it."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupctl.protocol import ErrorCode, RpcError
from tests.in_process import call, configure, make_service, running


def damage(repository: Path) -> tuple[Path, bytes]:
    """Overwrite part of the largest segment; the segment and what it held, to undo it."""
    segments = [path for path in (repository / "data").rglob("*") if path.is_file()]
    largest = max(segments, key=lambda segment: segment.stat().st_size)
    whole = largest.read_bytes()
    middle = len(whole) // 2
    largest.write_bytes(whole[:middle] + b"\xff" * 64 + whole[middle + 64:])
    return largest, whole


async def test_check_reports_damage_as_a_problem_until_a_clean_check(
    tmp_path: Path, repository: Path, sample_data: Path
) -> None:
    service = make_service(tmp_path)
    async with running(service):
        await configure(service, repository, [sample_data])
        await call(service, "snapshot", {"wait": True})
        healthy = await call(service, "check", {"wait": True})
        clean = (await call(service, "status"))["problem"]
        segment, whole = damage(repository)
        damaged = await call(service, "check", {"wait": True})
        problem = (await call(service, "status"))["problem"]
        segment.write_bytes(whole)
        repaired = await call(service, "check", {"wait": True})
        after = (await call(service, "status"))["problem"]
    assert healthy["result"] == {"ok": True, "errors": []} and clean is None
    assert damaged["state"] == "succeeded" and damaged["result"]["ok"] is False
    assert problem["code"] == "check_failed" and "damage" in problem["message"]
    assert repaired["result"]["ok"] is True and after is None


async def test_check_before_configure_says_so(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    async with running(service):
        with pytest.raises(RpcError) as refused:
            await call(service, "check")
    assert refused.value.code == ErrorCode.NOT_CONFIGURED
