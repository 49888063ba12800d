"""Which box writes into a mirror's prefix: claiming it when a mirror is set up (another
box's claim only with take_over), and checking before each mirror writes that it still holds it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.bucket import run
from backupd.actions.parts import MirrorParts
from backupd.mirror import rclone
from backupd.mirror.config import MirrorConfig
from backupd.mirror.owner import Owner, claims_in, owner_object, owner_text, read_owner
from backupd.mirror.repository_copy import ListingUnreadable, parse_listing
from backupd.mirror.staging import write_upload_file

log = logging.getLogger(__name__)


def keep_claim(parts: MirrorParts, mirror: MirrorConfig) -> MirrorConfig:
    """The same prefix set up again on this box keeps its claim on it (new keys, say)."""
    previous = parts.mirroring.current
    if previous is not None and previous.claim and previous.location() == mirror.location():
        return replace(mirror, claim=previous.claim)
    return mirror


async def claim_ownership(parts: MirrorParts, mirror: MirrorConfig, take_over: bool) -> None:
    """Make this configuration the one that writes into the prefix. Another box's (or another
    configuration's) claim is refused unless taken over; taken over, it is removed after this
    one is written, and its box learns at its next mirror that it lost the prefix."""
    claims = claims_in(await top_of_prefix(parts, mirror))
    others = [claim for claim in claims if claim != mirror.claim]
    if others and not take_over:
        owner = await read_owner_of(parts, mirror, others[-1])
        raise RpcError(ErrorCode.REPOSITORY_EXISTS, f"{mirror.location()} is where {owner.box} copies its backups"
                       f"{_since(owner)}; pass take_over to make this box the only one that copies there "
                       f"({owner.box} then stops)", {"param": "prefix"})
    if mirror.claim not in claims:
        await _write_owner(parts, mirror)
    for other in others:
        log.warning("taking over %s from another box's mirror configuration", mirror.location())
        await run(parts, mirror, rclone.delete_file(f"{mirror.remote}/{owner_object(other)}"))


async def _write_owner(parts: MirrorParts, mirror: MirrorConfig) -> None:
    name = owner_object(mirror.claim)
    folder = await trio.to_thread.run_sync(write_upload_file, parts.repository.settings().state_dir, name,
                                           owner_text(parts.box_name(), parts.repository.now()))
    await run(parts, mirror, rclone.upload_one(folder, mirror.remote, name))


async def read_owner_of(parts: MirrorParts, mirror: MirrorConfig, claim: str) -> Owner:
    try:
        text = (await run(parts, mirror, rclone.read_file(f"{mirror.remote}/{owner_object(claim)}"))).stdout
    except RpcError:
        text = ""
    return read_owner(text)


def _since(owner: Owner) -> str:
    if owner.claimed is None:
        return ""
    return " since " + datetime.fromtimestamp(owner.claimed, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


async def check_owner(parts: MirrorParts, mirror: MirrorConfig, paths: Iterable[str]) -> None:
    """Before a run writes: the prefix must still be this configuration's. One that has no
    owner yet (mirrored by an earlier version) becomes this configuration's."""
    claims = claims_in(paths)
    others = [claim for claim in claims if claim != mirror.claim]
    if others:
        owner = await read_owner_of(parts, mirror, others[-1])
        raise RpcError(ErrorCode.MIRROR_TAKEN_OVER, f"{mirror.location()} is where {owner.box} copies its backups"
                       f"{_since(owner)}: this box no longer copies there. To copy there again, set up the mirror "
                       f"with take_over ({owner.box} then stops), or choose another prefix",
                       {"box": owner.box, "claimed": owner.claimed})
    if mirror.claim not in claims:
        await _write_owner(parts, mirror)


async def still_owner(parts: MirrorParts, mirror: MirrorConfig) -> None:
    await check_owner(parts, mirror, await top_of_prefix(parts, mirror))


async def top_of_prefix(parts: MirrorParts, mirror: MirrorConfig) -> tuple[str, ...]:
    """The names of the files right under the prefix (its owner objects among them)."""
    listing = await run(parts, mirror, rclone.list_folder(mirror.remote))
    try:
        return tuple(file.path for file in parse_listing(listing.stdout))
    except ListingUnreadable as error:
        raise RpcError(ErrorCode.MIRROR_FAILED, f"Listing {mirror.location()} failed: {error}") from None
