"""Who is on the other end of a connection, and what they may call."""

from __future__ import annotations

import grp
import os
import socket
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import trio

from backupd.settings import Access

_UCRED = struct.Struct("3i")
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_MAX_GROUPS = 256


class Level(StrEnum):
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int]
    command: str

    def record(self) -> dict[str, Any]:
        """Who asked, as job records show it."""
        return {"uid": self.uid, "pid": self.pid, "command": self.command}


def peer_of(sock: trio.socket.SocketType) -> Peer:
    """The peer's credentials as the kernel recorded them at connect (SO_PEERCRED)."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    groups = _peer_groups(sock)
    return Peer(pid=pid, uid=uid, gid=gid, groups=frozenset(groups | {gid}), command=_command_name(pid))


def _peer_groups(sock: trio.socket.SocketType) -> set[int]:
    """The supplementary groups the peer had at connect (SO_PEERGROUPS)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_GROUPS)
    except OSError:
        return set()
    return set(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


def _command_name(pid: int) -> str:
    """The peer's command name, where /proc lets the daemon see it."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def allowed_levels(peer: Peer, access: Access) -> frozenset[Level]:
    if peer.uid in (0, os.getuid()) or peer.uid in access.admin_uids or _in_groups(peer, access.admin_groups):
        return frozenset({Level.READ, Level.ADMIN})
    if access.read_uids is None and access.read_groups is None:
        return frozenset({Level.READ})
    if peer.uid in (access.read_uids or ()) or _in_groups(peer, access.read_groups or ()):
        return frozenset({Level.READ})
    return frozenset()


def _in_groups(peer: Peer, names: tuple[str, ...]) -> bool:
    for name in names:
        try:
            if grp.getgrnam(name).gr_gid in peer.groups:
                return True
        except KeyError:
            continue
    return False
