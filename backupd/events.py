"""How the daemon's parts hear of a change (`Changes`), and the fan-out of notifications to
clients that never slows the publisher (`EventHub`).

Each subscriber keeps its own queue. Progress and the overview are coalesced: a subscriber
that falls behind gets only the newest progress of each job and the newest overview, each in
the place of its latest publication, and every other notification (job.started,
job.finished) in order. Only those can fill a queue, so a subscriber loses job.finished only
after it has left MAX_PENDING of them unread.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import trio

from backupctl.protocol import Notification

MAX_PENDING = 10_000

# What one subscriber is sent of a notification: itself, a narrower copy, or nothing.
NotificationFilter = Callable[[Notification], Notification | None]


class Change(StrEnum):
    CONFIG = "config"  # the backup configuration, and with it the schedule
    STATUS = "status"  # anything the overview shows
    JOB_STARTED = "job.started"
    JOB_FINISHED = "job.finished"


class Changes:
    """The one way a part tells the others of a change: each listener is called at once, in
    the order it began listening, with what changed (the job for a job's change, else None)."""

    def __init__(self) -> None:
        self._listeners: dict[Change, list[Callable[[Any], None]]] = {change: [] for change in Change}

    def on(self, change: Change, listener: Callable[[Any], None]) -> None:
        self._listeners[change].append(listener)

    def tell(self, change: Change, subject: Any = None) -> None:
        for listener in self._listeners[change]:
            listener(subject)


class SubscriberOverflow(Exception):
    """A subscriber stopped reading for so long that its queue hit MAX_PENDING."""


class Subscriber:
    def __init__(self) -> None:
        self._pending: dict[int, Notification] = {}
        self._sequence = itertools.count()
        self._coalesced: dict[Any, int] = {}
        self._wakeup = trio.Event()
        self.overflowed = False
        self.closed = False

    def close(self) -> None:
        """End the subscription: next_batch() returns an empty batch from now on."""
        self.closed = True
        self._wakeup.set()

    def push(self, notification: Notification, coalesce_key: Any = None) -> None:
        """Queue a notification; one with a coalesce key replaces the unread one with the same key."""
        if coalesce_key is not None:
            replaced = self._coalesced.pop(coalesce_key, None)
            if replaced is not None:
                del self._pending[replaced]
        elif len(self._pending) - len(self._coalesced) >= MAX_PENDING:
            self.overflowed = True
            self._wakeup.set()
            return
        position = next(self._sequence)
        self._pending[position] = notification
        if coalesce_key is not None:
            self._coalesced[coalesce_key] = position
        self._wakeup.set()

    async def next_batch(self) -> list[Notification]:
        """Wait until something is pending, then take all of it; empty once closed."""
        while not self._pending and not self.overflowed and not self.closed:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        if self.closed:
            return []
        if self.overflowed:
            raise SubscriberOverflow()
        batch = list(self._pending.values())
        self._pending.clear()
        self._coalesced.clear()
        return batch


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()

    def publish(self, method: str, params: dict[str, Any]) -> None:
        notification = Notification(method, params)
        coalesce_key = _coalesce_key(method, params)
        for subscriber in self._subscribers:
            subscriber.push(notification, coalesce_key)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)


def _coalesce_key(method: str, params: dict[str, Any]) -> Any:
    """What a newer notification supersedes: the same job's progress, or the overview."""
    if method == "job.progress":
        return ("job.progress", params.get("id"))
    if method == "status.changed":
        return "status.changed"
    return None
