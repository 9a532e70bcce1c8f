"""The synchronous client: `Presence(redis.Redis(...))`, or `Presence(RedisCluster(...))`.

Single-user commands go where the cluster client routes their key (the user id is each command's
declared key, so they reach the owning master directly). Multi-user and node-wide reads are
spread as the module needs: BULK grouped by slot, chunked by `max-bulk` and pipelined per node;
COUNT, SWEEP and TYPERS asked of every master; LIST merged over every master.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from . import _protocol as p
from ._protocol import Id
from .events import Subscription

Meta = None | str | Mapping[str, Any]


class Presence:
    """One method per command of the module, with every option; typed results."""

    def __init__(self, client: Redis | RedisCluster, *, max_bulk: int = 1000) -> None:
        self.client = client
        # redis-py's command methods are untyped: calls go through this view of the same client.
        self._redis: Any = client
        self.max_bulk = max_bulk
        self.cluster = isinstance(client, RedisCluster)

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._redis.execute_command(*args, **kwargs)
        except ResponseError as e:
            raise p.error_from(e) from None

    def _everywhere(self, *args: Any) -> list[Any]:
        """The reply of every master (of the one server when not a cluster)."""
        if not self.cluster:
            return [self._call(*args)]
        assert isinstance(self.client, RedisCluster)
        return [self._call(*args, target_nodes=node) for node in self._redis.get_primaries()]

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
        args: list[Any] = ["PRESENCE.ONLINE", user, device]
        args += p.options(ttl=ttl, meta=p.meta_text(meta))
        if scopes:
            args += ["SCOPE", *scopes]
        return int(self._call(*args))

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
        args = ["PRESENCE.HEARTBEAT", user, device, *p.options(ttl=ttl, meta=p.meta_text(meta))]
        return bool(self._call(*args, *p.flags(active=active)))

    def offline(self, user: Id, device: Id) -> int:
        """PRESENCE.OFFLINE: the user's devices left."""
        return int(self._call("PRESENCE.OFFLINE", user, device))

    # --- reads ---

    def get(self, user: Id, *, viewer: Id | None = None) -> p.UserPresence:
        return p.parse_get(self._call("PRESENCE.GET", user, *p.options(viewer=viewer)))

    def bulk(
        self, users: Sequence[Id], *, viewer: Id | None = None, with_device: bool = False
    ) -> list[p.BulkRow]:
        """PRESENCE.BULK for any number of users anywhere in the cluster: grouped by slot,
        chunked by `max_bulk`, pipelined per node; rows in the order asked."""
        tail = [*p.options(viewer=viewer), *p.flags(withdevice=with_device)]
        rows: list[p.BulkRow | None] = [None] * len(users)
        groups: dict[Any, list[list[int]]] = defaultdict(list)
        by_slot: dict[int, list[int]] = defaultdict(list)
        for i, user in enumerate(users):
            by_slot[p.key_slot(user) if self.cluster else 0].append(i)
        for slot, positions in by_slot.items():
            node = self._node_of_slot(slot)
            groups[node].extend(list(c) for c in p.chunks(positions, self.max_bulk))
        for node, chunks in groups.items():
            replies = self._pipelined(
                node, [["PRESENCE.BULK", *(users[i] for i in c), *tail] for c in chunks]
            )
            for positions, reply in zip(chunks, replies, strict=False):
                for i, row in zip(positions, p.parse_bulk(reply), strict=False):
                    rows[i] = row
        return [row for row in rows if row is not None]

    def _node_of_slot(self, slot: int) -> Any:
        if not self.cluster:
            return None
        assert isinstance(self.client, RedisCluster)
        return self._redis.nodes_manager.get_node_from_slot(slot)

    def _pipelined(self, node: Any, commands: list[list[Any]]) -> list[Any]:
        """Sends `commands` to one node in one pipeline; a command the node refuses (a slot
        that moved meanwhile) is sent again through the cluster client, which follows it."""
        if node is None:
            pipe = self._redis.pipeline(transaction=False)
            for c in commands:
                pipe.execute_command(*c)
            replies = pipe.execute(raise_on_error=False)
        else:
            assert isinstance(self.client, RedisCluster)
            pipe = self._redis.get_redis_connection(node).pipeline(transaction=False)
            for c in commands:
                pipe.execute_command(*c)
            replies = pipe.execute(raise_on_error=False)
            for i, reply in enumerate(replies):
                if isinstance(reply, ResponseError) and str(reply).startswith(("MOVED", "ASK")):
                    replies[i] = self._call(*commands[i])
        for reply in replies:
            if isinstance(reply, Exception):
                raise p.error_from(reply)
        return list(replies)

    def devices(self, user: Id) -> list[p.Device]:
        return p.parse_devices(self._call("PRESENCE.DEVICES", user))

    # --- status ---

    def status(
        self, user: Id, status: str, *, message: str | None = None, for_ms: int | None = None
    ) -> None:
        """PRESENCE.STATUS: online, away, busy, dnd, invisible, or auto to clear."""
        args = ["PRESENCE.STATUS", user, status, *p.options(message=message)]
        if for_ms is not None:
            args += ["FOR", for_ms]
        self._call(*args)

    def activity(self, user: Id, device: Id | None = None) -> None:
        self._call("PRESENCE.ACTIVITY", user, *([] if device is None else [device]))

    def context(self, user: Id, device: Id, context: Id | None) -> None:
        """PRESENCE.CONTEXT: the conversation the device has open (None closes it)."""
        self._call("PRESENCE.CONTEXT", user, device, "NONE" if context is None else context)

    def in_context(self, user: Id, context: Id) -> bool:
        return bool(self._call("PRESENCE.INCONTEXT", user, context))

    # --- privacy ---

    def privacy(
        self, user: Id, *, online: str | None = None, lastseen: str | None = None
    ) -> p.Privacy:
        """PRESENCE.PRIVACY: sets the rules given; returns the rules in force."""
        if online is not None or lastseen is not None:
            self._call("PRESENCE.PRIVACY", user, *p.options(online=online, lastseen=lastseen))
        return p.parse_privacy(self._call("PRESENCE.PRIVACY", user))

    def add_contacts(self, user: Id, *contacts: Id) -> int:
        return int(self._call("PRESENCE.CONTACTS", user, "ADD", *contacts))

    def remove_contacts(self, user: Id, *contacts: Id) -> int:
        return int(self._call("PRESENCE.CONTACTS", user, "REM", *contacts))

    def contacts(self, user: Id) -> list[str]:
        return [p.text(c) for c in self._call("PRESENCE.CONTACTS", user, "LIST")]

    def fanout(
        self,
        user: Id,
        *,
        event: str | bytes | p.Event | None = None,
        viewers: Sequence[Id] | None = None,
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """PRESENCE.FANOUT: what each viewer (the user's contacts when `viewers` is None) may see
        of the user now, or of `event`; None where a viewer sees no change."""
        args: list[Any] = ["PRESENCE.FANOUT", user]
        if event is not None:
            args += ["EVENT", event.payload if isinstance(event, p.Event) else event]
        args += ["CONTACTS"] if viewers is None else ["VIEWERS", *viewers]
        return p.parse_fanout(self._call(*args))

    def channel(self, user: Id) -> str:
        """PRESENCE.CHANNEL: the user's own event channel, as the module names it."""
        return p.text(self._call("PRESENCE.CHANNEL", user))

    # --- rooms ---

    def join(self, user: Id, device: Id, room: Id, *, data: Meta = None) -> bool:
        """PRESENCE.JOIN: True if the device joined, False if it was in the room."""
        return bool(
            self._call("PRESENCE.JOIN", user, device, room, *p.options(data=p.meta_text(data)))
        )

    def leave(self, user: Id, device: Id, room: Id) -> bool:
        return bool(self._call("PRESENCE.LEAVE", user, device, room))

    def rooms(self, user: Id) -> list[str]:
        return [p.text(r) for r in self._call("PRESENCE.ROOMS", user)]

    def device_rooms(self, user: Id, device: Id) -> list[tuple[str, str | None]]:
        """The rooms of one device, each with its member data."""
        return p.parse_room_pairs(self._call("PRESENCE.ROOMS", user, device))

    def typing(self, user: Id, device: Id, room: Id | None) -> None:
        """PRESENCE.TYPING: the device types in `room` (None stops it)."""
        self._call("PRESENCE.TYPING", user, device, "NONE" if room is None else room)

    def typers(self, room: Id) -> list[tuple[str, str]]:
        """PRESENCE.TYPERS over every master: `(user, device)` pairs."""
        return [
            pair
            for reply in self._everywhere("PRESENCE.TYPERS", room)
            for pair in p.parse_typers(reply)
        ]

    # --- listings ---

    def count(self, scope: Id | None = None) -> int:
        """PRESENCE.COUNT summed over every master."""
        return sum(int(n) for n in self._everywhere("PRESENCE.COUNT", *p.options(scope=scope)))

    def sweep(self, limit: int | None = None) -> int:
        return sum(int(n) for n in self._everywhere("PRESENCE.SWEEP", *p.options(limit=limit)))

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
        args = [
            "PRESENCE.LIST",
            *p.options(scope=scope, limit=limit, cursor=cursor),
            *p.flags(withscopes=with_scopes, withdevices=with_devices),
        ]
        kwargs = {} if node is None else {"target_nodes": node}
        return p.parse_page(self._call(*args, **kwargs), with_scopes, with_devices)

    def members(
        self,
        scope: Id | None = None,
        *,
        page: int = 100,
        with_scopes: bool = False,
        with_devices: bool = False,
    ) -> Iterator[p.Member]:
        """Every listed user (of `scope`), most recently active first, merged over every master."""
        nodes: list[Any] = [None]
        if self.cluster:
            assert isinstance(self.client, RedisCluster)
            nodes = list(self._redis.get_primaries())

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
