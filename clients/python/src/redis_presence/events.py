"""Subscriptions to the module's events: the global channel, users' own sharded channels, rooms'
channels; each payload parsed into a typed event, and repeats dropped by `seq`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import _protocol as p
from ._protocol import Event, Id, RoomEvent

AnyEvent = Event | RoomEvent


class Deduplicator:
    """Drops events already seen: a user's events are numbered by `seq`, strictly increasing, so
    one whose number is not above the last seen for that user (and that room, for room events,
    which share the user's numbers but come on other channels) is a repeat."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str | None], int] = {}

    def fresh(self, event: AnyEvent) -> bool:
        key = (event.user, event.room if isinstance(event, RoomEvent) else None)
        if event.seq <= self._last.get(key, 0):
            return False
        self._last[key] = event.seq
        return True


class Subscription:
    """Events of everyone, of some users and of some rooms: iterate `events()`, then `close()`."""

    def __init__(
        self,
        client: Any,
        *,
        everyone: bool = False,
        users: Sequence[Id] = (),
        rooms: Sequence[Id] = (),
        channel: str = p.EVENTS_CHANNEL,
    ) -> None:
        self.pubsub = client.pubsub()
        self.dedup = Deduplicator()
        channels = ([channel] if everyone else []) + [p.room_channel(r) for r in rooms]
        if channels:
            self.pubsub.subscribe(*channels)
        self.user_channels = [p.user_channel(u) for u in users]
        if self.user_channels:
            self.pubsub.ssubscribe(*self.user_channels)

    def events(self, timeout: float | None = None) -> Iterator[AnyEvent]:
        """The events as they come, without repeats; stops after `timeout` seconds with nothing
        new (never, when None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            message = self._next(0.1 if left is None else min(left, 0.1))
            if message is None:
                continue
            event = p.parse_event(message["data"])
            if self.dedup.fresh(event):
                if timeout is not None:
                    deadline = time.monotonic() + timeout
                yield event

    def _next(self, wait: float) -> dict[str, Any] | None:
        message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
        if message is None and self.user_channels:
            message = (
                self.pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=wait)
                if hasattr(self.pubsub, "get_sharded_message")
                else None
            )
        if message is None or message.get("type") not in ("message", "smessage"):
            return None
        return dict(message)

    def close(self) -> None:
        self.pubsub.close()
