"""Which box's mirror configuration owns a prefix: one small object under the prefix whose name
carries the configuration's claim (``.backupd-owner-<claim>``) and whose text says which box
and since when. The listing a mirror run makes anyway shows the owner: no extra request."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

OWNER_PREFIX = ".backupd-owner-"
_CLAIM = re.compile(r"[0-9a-f]{32}")
_LONGEST_BOX_NAME = 200


@dataclass(frozen=True)
class Owner:
    """Who writes into a prefix, as its owner object says."""

    box: str
    claimed: float | None


def new_claim() -> str:
    return secrets.token_hex(16)


def owner_object(claim: str) -> str:
    return f"{OWNER_PREFIX}{claim}"


def claims_in(paths: Iterable[str]) -> tuple[str, ...]:
    """The claims of the owner objects at the top of a prefix's listing."""
    return tuple(sorted(path[len(OWNER_PREFIX):] for path in paths
                        if path.startswith(OWNER_PREFIX) and _CLAIM.fullmatch(path[len(OWNER_PREFIX):])))


def owner_text(box: str, claimed: float) -> str:
    return json.dumps({"box": box, "claimed": claimed}) + "\n"


def read_owner(text: str) -> Owner:
    """An owner object's text; what cannot be read is an unknown box."""
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return Owner("an unknown box", None)
    box = record.get("box")
    claimed = record.get("claimed")
    return Owner(
        box=box[:_LONGEST_BOX_NAME] if isinstance(box, str) and box.isprintable() and box else "an unknown box",
        claimed=float(claimed) if isinstance(claimed, (int, float)) and not isinstance(claimed, bool) else None,
    )
