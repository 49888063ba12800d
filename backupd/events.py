"""Fan-out of notifications to subscribers that never slows the publisher.

Each subscriber keeps its own queue. Progress is coalesced: a subscriber that falls behind
gets only the newest progress of each job, but every other notification in order.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from backupctl.protocol import Notification

MAX_PENDING = 10_000


class SubscriberOverflow(Exception):
    """A subscriber stopped reading for so long that its queue hit MAX_PENDING."""


class Subscriber:
    def __init__(self) -> None:
        self._pending: deque[Notification] = deque()
        self._latest_progress: dict[Any, Notification] = {}
        self._wakeup = trio.Event()
        self.overflowed = False
        self.closed = False

    def close(self) -> None:
        """End the subscription: next_batch() returns an empty batch from now on."""
        self.closed = True
        self._wakeup.set()

    def push(self, notification: Notification, coalesce_key: Any = None) -> None:
        if coalesce_key is not None:
            if coalesce_key not in self._latest_progress:
                self._pending.append(notification)
            self._latest_progress[coalesce_key] = notification
        elif len(self._pending) >= MAX_PENDING:
            self.overflowed = True
        else:
            self._pending.append(notification)
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
        batch = [self._resolve(notification) for notification in self._pending]
        self._pending.clear()
        self._latest_progress.clear()
        return batch

    def _resolve(self, notification: Notification) -> Notification:
        if notification.method == "job.progress":
            return self._latest_progress.get(notification.params.get("id"), notification)
        return notification


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()

    def publish(self, method: str, params: dict[str, Any]) -> None:
        notification = Notification(method, params)
        coalesce_key = params.get("id") if method == "job.progress" else None
        for subscriber in self._subscribers:
            subscriber.push(notification, coalesce_key)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
