"""The synchronous client: `Presence(redis.Redis(...))`, or `Presence(RedisCluster(...))`.

Single-user commands go where the cluster client routes their key (the user id is each command's
declared key, so they reach the owning master directly). Multi-user and node-wide reads are
spread as the module needs: BULK grouped by slot, chunked by `max-bulk` and pipelined per node;
COUNT, SWEEP and TYPERS asked of every master; LIST merged over every master.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from . import _calls as c
from . import _protocol as p
from ._calls import Call, Meta
from ._protocol import Id
from .events import Subscription

T = TypeVar("T")


class Presence:
    """One method per command of the module, with every option; typed results."""

    def __init__(self, client: Redis | RedisCluster, *, max_bulk: int = 1000) -> None:
        self.client = client
        # redis-py's command methods are untyped: calls go through this view of the same client.
        self._redis: Any = client
        self.max_bulk = max_bulk
        self.cluster = isinstance(client, RedisCluster)

    def _run(self, call: Call[T], **kwargs: Any) -> T:
        try:
            return call.parse(self._redis.execute_command(*call.args, **kwargs))
        except ResponseError as e:
            raise p.error_from(e) from None

    def _everywhere(self, call: Call[T]) -> list[T]:
        """The reply of every master (of the one server when not a cluster)."""
        if not self.cluster:
            return [self._run(call)]
        return [self._run(call, target_nodes=node) for node in self._redis.get_primaries()]

    # --- devices ---

    def online(
        self,
        user: Id,
        device: Id,
        *,
        ttl: int | None = None,
        meta: Meta = None,
        scopes: Sequence[Id] | None = None,
    ) -> int:
        """PRESENCE.ONLINE: the user's connected devices afterwards."""
        return self._run(c.online(user, device, ttl, meta, scopes))

    def heartbeat(
        self,
        user: Id,
        device: Id,
        *,
        ttl: int | None = None,
        active: bool = False,
        meta: Meta = None,
    ) -> bool:
        """PRESENCE.HEARTBEAT: True if the device was connected, False if this registered it."""
        return self._run(c.heartbeat(user, device, ttl, active, meta))

    def offline(self, user: Id, device: Id) -> int:
        """PRESENCE.OFFLINE: the user's devices left."""
        return self._run(c.offline(user, device))

    # --- reads ---

    def get(self, user: Id, *, viewer: Id | None = None) -> p.UserPresence:
        return self._run(c.get(user, viewer))

    def bulk(
        self, users: Sequence[Id], *, viewer: Id | None = None, with_device: bool = False
    ) -> list[p.BulkRow]:
        """PRESENCE.BULK for any number of users anywhere in the cluster: grouped by slot,
        chunked by `max_bulk`, pipelined per node; rows in the order asked."""
        plan = c.bulk_plan(users, self.max_bulk, p.key_slot if self.cluster else lambda _: 0)
        by_node: dict[Any, list[list[int]]] = {}
        for slot, positions in plan:
            node = self._redis.nodes_manager.get_node_from_slot(slot) if self.cluster else None
            by_node.setdefault(node, []).append(positions)
        rows: list[p.BulkRow | None] = [None] * len(users)
        for node, chunks in by_node.items():
            calls = [c.bulk([users[i] for i in chunk], viewer, with_device) for chunk in chunks]
            for chunk, got in zip(chunks, self._pipelined(node, calls), strict=True):
                for i, row in zip(chunk, got, strict=True):
                    rows[i] = row
        return [row for row in rows if row is not None]

    def _pipelined(self, node: Any, calls: list[Call[T]], raise_errors: bool = True) -> list[T]:
        """Runs `calls` on one node in one pipeline; a call the node refuses because its slot
        moved meanwhile is run again through the cluster client, which follows the slot. An error
        reply is raised, or with `raise_errors` false put in its place as its exception."""
        target = self._redis if node is None else self._redis.get_redis_connection(node)
        pipe = target.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args)
        replies = pipe.execute(raise_on_error=False)
        out = []
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, ResponseError) and str(reply).startswith(("MOVED", "ASK")):
                out.append(self._run(call))
            elif isinstance(reply, Exception) and raise_errors:
                raise p.error_from(reply)
            elif isinstance(reply, Exception):
                out.append(p.error_from(reply))  # type: ignore[arg-type]
            else:
                out.append(call.parse(reply))
        return out

    def devices(self, user: Id) -> list[p.Device]:
        return self._run(c.devices(user))

    # --- status ---

    def status(
        self, user: Id, status: str, *, message: str | None = None, for_ms: int | None = None
    ) -> None:
        """PRESENCE.STATUS: online, away, busy, dnd, invisible, or auto to clear."""
        self._run(c.status(user, status, message, for_ms))

    def activity(self, user: Id, device: Id | None = None) -> None:
        self._run(c.activity(user, device))

    def context(self, user: Id, device: Id, context: Id | None) -> None:
        """PRESENCE.CONTEXT: the conversation the device has open (None closes it)."""
        self._run(c.context(user, device, context))

    def in_context(self, user: Id, context: Id) -> bool:
        return self._run(c.in_context(user, context))

    # --- privacy ---

    def privacy(
        self, user: Id, *, online: str | None = None, lastseen: str | None = None
    ) -> p.Privacy:
        """PRESENCE.PRIVACY: sets the rules given; returns the rules in force."""
        if online is not None or lastseen is not None:
            self._run(c.set_privacy(user, online, lastseen))
        return self._run(c.privacy(user))

    def add_contacts(self, user: Id, *contacts: Id) -> int:
        return self._run(c.contacts(user, "ADD", contacts))

    def remove_contacts(self, user: Id, *contacts: Id) -> int:
        return self._run(c.contacts(user, "REM", contacts))

    def contacts(self, user: Id) -> list[str]:
        return self._run(c.contact_list(user))

    def fanout(
        self,
        user: Id,
        *,
        event: str | bytes | p.Event | None = None,
        viewers: Sequence[Id] | None = None,
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """PRESENCE.FANOUT: what each viewer (the user's contacts when `viewers` is None) may see
        of the user now, or of `event`; None where a viewer sees no change."""
        return self._run(c.fanout(user, event, viewers))

    def channel(self, user: Id) -> str:
        """PRESENCE.CHANNEL: the user's own event channel, as the module names it."""
        return self._run(c.channel(user))

    # --- rooms ---

    def join(self, user: Id, device: Id, room: Id, *, data: Meta = None) -> bool:
        """PRESENCE.JOIN: True if the device joined, False if it was in the room."""
        return self._run(c.join(user, device, room, data))

    def leave(self, user: Id, device: Id, room: Id) -> bool:
        return self._run(c.leave(user, device, room))

    def rooms(self, user: Id) -> list[str]:
        return self._run(c.rooms(user))

    def device_rooms(self, user: Id, device: Id) -> list[tuple[str, str | None]]:
        """The rooms of one device, each with its member data."""
        return self._run(c.device_rooms(user, device))

    def typing(self, user: Id, device: Id, room: Id | None) -> None:
        """PRESENCE.TYPING: the device types in `room` (None stops it)."""
        self._run(c.typing(user, device, room))

    def typers(self, room: Id) -> list[tuple[str, str]]:
        """PRESENCE.TYPERS over every master: `(user, device)` pairs."""
        return [pair for got in self._everywhere(c.typers(room)) for pair in got]

    # --- listings ---

    def count(self, scope: Id | None = None) -> int:
        """PRESENCE.COUNT summed over every master."""
        return sum(self._everywhere(c.count(scope)))

    def sweep(self, limit: int | None = None) -> int:
        return sum(self._everywhere(c.sweep(limit)))

    def list_page(
        self,
        scope: Id | None = None,
        *,
        cursor: str = "0",
        limit: int | None = None,
        with_scopes: bool = False,
        with_devices: bool = False,
        node: Any = None,
    ) -> p.Page:
        """One PRESENCE.LIST page of one node (of the server, when not a cluster)."""
        call = c.list_page(scope, cursor, limit, with_scopes, with_devices)
        return self._run(call) if node is None else self._run(call, target_nodes=node)

    def members(
        self,
        scope: Id | None = None,
        *,
        page: int = 100,
        with_scopes: bool = False,
        with_devices: bool = False,
    ) -> Iterator[p.Member]:
        """Every listed user (of `scope`), most recently active first, merged over every master."""
        nodes: list[Any] = list(self._redis.get_primaries()) if self.cluster else [None]

        def walk(node: Any) -> Iterator[p.Member]:
            cursor = "0"
            while True:
                got = self.list_page(
                    scope,
                    cursor=cursor,
                    limit=page,
                    with_scopes=with_scopes,
                    with_devices=with_devices,
                    node=node,
                )
                yield from got.members
                if got.cursor == "0":
                    return
                cursor = got.cursor

        yield from heapq.merge(*(walk(n) for n in nodes), key=p.listing_order)

    # --- pipelines ---

    def pipeline(self) -> PresencePipeline:
        """A batch of single-user commands sent together: on a cluster, one pipeline per master
        (each command goes to the master that owns its user); replies in the order queued."""
        return PresencePipeline(self)

    # --- events ---

    def subscribe(
        self,
        *,
        everyone: bool = False,
        users: Sequence[Id] = (),
        rooms: Sequence[Id] = (),
        channel: str = p.EVENTS_CHANNEL,
    ) -> Subscription:
        """A subscription to the events of everyone (the global channel), of some users (their
        own sharded channels) and of some rooms, with `seq` de-duplication."""
        return Subscription(
            self.client, everyone=everyone, users=users, rooms=rooms, channel=channel
        )


class PresencePipeline:
    """Queues single-user commands (`online`, `heartbeat`, `get`, ...: the same methods, returning
    nothing), then `execute()` sends them, one pipeline per node, and returns each reply, parsed,
    in the order they were queued (an error reply comes back as its exception, not raised)."""

    def __init__(self, presence: Presence) -> None:
        self._presence = presence
        self._queued: list[tuple[Id, Call[Any]]] = []

    def _queue(self, user: Id, call: Call[Any]) -> PresencePipeline:
        self._queued.append((user, call))
        return self

    def online(
        self,
        user: Id,
        device: Id,
        *,
        ttl: int | None = None,
        meta: Meta = None,
        scopes: Sequence[Id] | None = None,
    ) -> PresencePipeline:
        return self._queue(user, c.online(user, device, ttl, meta, scopes))

    def heartbeat(
        self, user: Id, device: Id, *, ttl: int | None = None, active: bool = False
    ) -> PresencePipeline:
        return self._queue(user, c.heartbeat(user, device, ttl, active, None))

    def offline(self, user: Id, device: Id) -> PresencePipeline:
        return self._queue(user, c.offline(user, device))

    def get(self, user: Id, *, viewer: Id | None = None) -> PresencePipeline:
        return self._queue(user, c.get(user, viewer))

    def status(self, user: Id, status: str, *, message: str | None = None) -> PresencePipeline:
        return self._queue(user, c.status(user, status, message, None))

    def activity(self, user: Id, device: Id | None = None) -> PresencePipeline:
        return self._queue(user, c.activity(user, device))

    def join(self, user: Id, device: Id, room: Id, *, data: Meta = None) -> PresencePipeline:
        return self._queue(user, c.join(user, device, room, data))

    def leave(self, user: Id, device: Id, room: Id) -> PresencePipeline:
        return self._queue(user, c.leave(user, device, room))

    def typing(self, user: Id, device: Id, room: Id | None) -> PresencePipeline:
        return self._queue(user, c.typing(user, device, room))

    def execute(self) -> list[Any]:
        pr = self._presence
        by_node: dict[Any, list[int]] = {}
        for i, (user, _) in enumerate(self._queued):
            node = pr._redis.get_node_from_key(user) if pr.cluster else None
            by_node.setdefault(node, []).append(i)
        out: list[Any] = [None] * len(self._queued)
        for node, positions in by_node.items():
            calls = [self._queued[i][1] for i in positions]
            for i, reply in zip(
                positions, pr._pipelined(node, calls, raise_errors=False), strict=True
            ):
                out[i] = reply
        self._queued = []
        return out
