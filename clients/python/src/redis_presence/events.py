"""Subscriptions to the module's events: the global channel, users' own sharded channels, rooms'
channels; each payload parsed into a typed event, and repeats dropped by `seq`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
import redis.exceptions

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


class SubscriptionState:
    """What the synchronous and asyncio subscriptions share: their channels, the de-duplication,
    where each user channel is subscribed, and what a message read means."""

    def __init__(
        self,
        client: Any,
        everyone: bool,
        users: Sequence[Id],
        rooms: Sequence[Id],
        channel: str,
    ) -> None:
        self.client = client
        self.dedup = Deduplicator()
        self.channels: list[bytes] = [p._bytes(channel)] if everyone else []
        self.channels += [p.room_channel(r) for r in rooms]
        self.user_channels = [p.user_channel(u) for u in users]
        self.resubscriptions = 0
        # Set while a resubscription is due and has not succeeded yet (the cluster is settling).
        self.lost = False
        self.pubsubs: list[Any] = []
        self._turn = 0

    def shard_plan(self, manager: Any) -> list[tuple[Any, list[bytes]]]:
        """The user channels grouped by the master that owns each one's slot."""
        by_node: dict[str, tuple[Any, list[bytes]]] = {}
        for ch in self.user_channels:
            node = manager.get_node_from_slot(p.key_slot(ch))
            by_node.setdefault(node.name, (node, []))[1].append(ch)
        return list(by_node.values())

    def next_pubsub(self) -> Any:
        """The pubsub to read next (each in turn)."""
        self._turn = (self._turn + 1) % len(self.pubsubs)
        return self.pubsubs[self._turn]

    def meaning(self, message: Any) -> dict[str, Any] | bool | None:
        """What a message read means: the message itself when it carries an event; True when the
        server dropped a channel of ours (its slot moved: subscribe anew); None otherwise."""
        if message is None:
            return None
        kind = p.text(message.get("type"))
        channel = p._bytes(message.get("channel") or b"")
        if kind == "sunsubscribe" and channel in set(self.user_channels):
            return True
        if kind not in ("message", "smessage"):
            return None
        return dict(message)

    def fresh_event(self, message: dict[str, Any]) -> AnyEvent | None:
        event = p.parse_event(message["data"])
        return event if self.dedup.fresh(event) else None


class Subscription(SubscriptionState):
    """Events of everyone, of some users and of some rooms: iterate `events()`, then `close()`.

    On a cluster, each user channel is subscribed on the master that owns its slot (with one
    connection per master), and the global and room channels on one master (`PUBLISH` reaches
    every node). The subscription stays subscribed through what a cluster does: a master that
    loses a slot unsubscribes the subscribers of its channels (an `sunsubscribe` the client did
    not ask for), and a master that fails takes its connections with it; either way the
    subscription reads the cluster's map again and subscribes anew, on the channels' current
    owners. Messages published meanwhile are lost, as pub/sub loses them (`events-stream`, or a
    read after resubscribing, covers them)."""

    def __init__(
        self,
        client: Any,
        *,
        everyone: bool = False,
        users: Sequence[Id] = (),
        rooms: Sequence[Id] = (),
        channel: str = p.EVENTS_CHANNEL,
    ) -> None:
        super().__init__(client, everyone, users, rooms, channel)
        self.pubsubs = self._subscribe()

    def _subscribe(self) -> list[Any]:
        """One pubsub per node the channels live on (the server's own, when not a cluster)."""
        manager = getattr(self.client, "nodes_manager", None)
        if manager is None:
            pubsub = self.client.pubsub()
            if self.channels:
                pubsub.subscribe(*self.channels)
            if self.user_channels:
                pubsub.ssubscribe(*self.user_channels)
            return [pubsub]
        pubsubs = []
        for node, channels in self.shard_plan(manager):
            pubsub = self._own_connection(node).pubsub()
            pubsub.ssubscribe(*channels)
            pubsubs.append(pubsub)
        if self.channels:
            pubsub = self._own_connection(self.client.get_primaries()[0]).pubsub()
            pubsub.subscribe(*self.channels)
            pubsubs.append(pubsub)
        return pubsubs

    def _own_connection(self, node: Any) -> Any:
        """A client of `node` with a pool of its own, with the cluster client's settings: the
        cluster client marks the connections of its pools for reconnection whenever it reads
        the cluster's map again, which would drop what arrives on a subscription meanwhile."""
        shared = self.client.get_redis_connection(node).connection_pool
        pool = redis.ConnectionPool(
            connection_class=shared.connection_class, **shared.connection_kwargs
        )
        return redis.Redis(connection_pool=pool)

    def _resubscribe(self) -> None:
        """Subscribes anew on the channels' current owners."""
        self._close_pubsubs()
        manager = getattr(self.client, "nodes_manager", None)
        if manager is not None:
            manager.initialize()
        self.pubsubs = self._subscribe()
        self.resubscriptions += 1

    def _resubscribe_when_possible(self) -> None:
        self.lost = True
        # The cluster may still be settling: until this succeeds, each read tries again.
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            self._resubscribe()
            self.lost = False

    def events(self, timeout: float | None = None) -> Iterator[AnyEvent]:
        """The events as they come, without repeats; stops after `timeout` seconds with nothing
        new (never, when None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            message = self._next(0.1 if left is None else min(left, 0.1))
            event = None if message is None else self.fresh_event(message)
            if event is not None:
                if timeout is not None:
                    deadline = time.monotonic() + timeout
                yield event

    def _next(self, wait: float) -> dict[str, Any] | None:
        if self.lost or not self.pubsubs:
            time.sleep(wait)
            if self.lost:
                self._resubscribe_when_possible()
            return None
        pubsub = self.next_pubsub()
        try:
            message = pubsub.get_message(timeout=wait / len(self.pubsubs))
        except (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            self._resubscribe_when_possible()
            return None
        meaning = self.meaning(message)
        if meaning is True:
            self._resubscribe_when_possible()
            return None
        return meaning or None

    def _close_pubsubs(self) -> None:
        for pubsub in self.pubsubs:
            with contextlib.suppress(Exception):  # the connection may be gone already
                pubsub.close()
                if pubsub.connection_pool is not getattr(self.client, "connection_pool", None):
                    pubsub.connection_pool.disconnect()
        self.pubsubs = []

    def close(self) -> None:
        self._close_pubsubs()
