"""The asyncio client: `AsyncPresence(redis.asyncio.Redis(...))`, or over
`redis.asyncio.cluster.RedisCluster(...)`. The same calls as the synchronous client (`_calls`),
awaited; in a cluster, a BULK's chunks for each node and the node-wide reads run concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from . import _calls as c
from . import _protocol as p
from ._calls import Call, Meta
from ._protocol import Id
from .events import AnyEvent, SubscriptionState

T = TypeVar("T")


class AsyncPresence:
    """One coroutine per command of the module, with every option; typed results."""

    def __init__(self, client: redis.asyncio.Redis | RedisCluster, *, max_bulk: int = 1000) -> None:
        self.client = client
        self._redis: Any = client
        self.max_bulk = max_bulk
        self.cluster = isinstance(client, RedisCluster)
        self._ready = not self.cluster

    async def _run(self, call: Call[T], **kwargs: Any) -> T:
        if not self._ready:
            # The cluster client learns the map and the commands' keys on its first call, which
            # it sends before knowing them: learn them first, so that call is routed too.
            await self._redis.initialize()
            self._ready = True
        try:
            return call.parse(await self._redis.execute_command(*call.args, **kwargs))
        except ResponseError as e:
            raise p.error_from(e) from None

    async def _everywhere(self, call: Call[T]) -> list[T]:
        if not self.cluster:
            return [await self._run(call)]
        nodes = self._redis.get_primaries()
        return list(await asyncio.gather(*(self._run(call, target_nodes=n) for n in nodes)))

    async def online(
        self,
        user: Id,
        device: Id,
        *,
        ttl: int | None = None,
        meta: Meta = None,
        scopes: Sequence[Id] | None = None,
    ) -> int:
        return await self._run(c.online(user, device, ttl, meta, scopes))

    async def heartbeat(
        self,
        user: Id,
        device: Id,
        *,
        ttl: int | None = None,
        active: bool = False,
        meta: Meta = None,
    ) -> bool:
        return await self._run(c.heartbeat(user, device, ttl, active, meta))

    async def offline(self, user: Id, device: Id) -> int:
        return await self._run(c.offline(user, device))

    async def get(self, user: Id, *, viewer: Id | None = None) -> p.UserPresence:
        return await self._run(c.get(user, viewer))

    async def bulk(
        self, users: Sequence[Id], *, viewer: Id | None = None, with_device: bool = False
    ) -> list[p.BulkRow]:
        """PRESENCE.BULK for any number of users anywhere in the cluster: grouped by slot,
        chunked by `max_bulk`, the chunks run concurrently; rows in the order asked."""
        plan = c.bulk_plan(users, self.max_bulk, p.key_slot if self.cluster else lambda _: 0)
        calls = [c.bulk([users[i] for i in chunk], viewer, with_device) for _, chunk in plan]
        replies = await asyncio.gather(*(self._run(call) for call in calls))
        rows: list[p.BulkRow | None] = [None] * len(users)
        for (_, chunk), got in zip(plan, replies, strict=True):
            for i, row in zip(chunk, got, strict=True):
                rows[i] = row
        return [row for row in rows if row is not None]

    async def devices(self, user: Id) -> list[p.Device]:
        return await self._run(c.devices(user))

    async def status(
        self, user: Id, status: str, *, message: str | None = None, for_ms: int | None = None
    ) -> None:
        await self._run(c.status(user, status, message, for_ms))

    async def activity(self, user: Id, device: Id | None = None) -> None:
        await self._run(c.activity(user, device))

    async def context(self, user: Id, device: Id, context: Id | None) -> None:
        await self._run(c.context(user, device, context))

    async def in_context(self, user: Id, context: Id) -> bool:
        return await self._run(c.in_context(user, context))

    async def privacy(
        self, user: Id, *, online: str | None = None, lastseen: str | None = None
    ) -> p.Privacy:
        if online is not None or lastseen is not None:
            await self._run(c.set_privacy(user, online, lastseen))
        return await self._run(c.privacy(user))

    async def add_contacts(self, user: Id, *contacts: Id) -> int:
        return await self._run(c.contacts(user, "ADD", contacts))

    async def remove_contacts(self, user: Id, *contacts: Id) -> int:
        return await self._run(c.contacts(user, "REM", contacts))

    async def contacts(self, user: Id) -> list[str]:
        return await self._run(c.contact_list(user))

    async def fanout(
        self,
        user: Id,
        *,
        event: str | bytes | p.Event | None = None,
        viewers: Sequence[Id] | None = None,
    ) -> list[tuple[str, dict[str, Any] | None]]:
        return await self._run(c.fanout(user, event, viewers))

    async def channel(self, user: Id) -> str:
        return await self._run(c.channel(user))

    async def join(self, user: Id, device: Id, room: Id, *, data: Meta = None) -> bool:
        return await self._run(c.join(user, device, room, data))

    async def leave(self, user: Id, device: Id, room: Id) -> bool:
        return await self._run(c.leave(user, device, room))

    async def rooms(self, user: Id) -> list[str]:
        return await self._run(c.rooms(user))

    async def device_rooms(self, user: Id, device: Id) -> list[tuple[str, str | None]]:
        return await self._run(c.device_rooms(user, device))

    async def typing(self, user: Id, device: Id, room: Id | None) -> None:
        await self._run(c.typing(user, device, room))

    async def typers(self, room: Id) -> list[tuple[str, str]]:
        return [pair for got in await self._everywhere(c.typers(room)) for pair in got]

    async def count(self, scope: Id | None = None) -> int:
        return sum(await self._everywhere(c.count(scope)))

    async def sweep(self, limit: int | None = None) -> int:
        return sum(await self._everywhere(c.sweep(limit)))

    async def list_page(
        self,
        scope: Id | None = None,
        *,
        cursor: str = "0",
        limit: int | None = None,
        with_scopes: bool = False,
        with_devices: bool = False,
        node: Any = None,
    ) -> p.Page:
        call = c.list_page(scope, cursor, limit, with_scopes, with_devices)
        return await (self._run(call) if node is None else self._run(call, target_nodes=node))

    async def members(
        self,
        scope: Id | None = None,
        *,
        page: int = 100,
        with_scopes: bool = False,
        with_devices: bool = False,
    ) -> list[p.Member]:
        """Every listed user (of `scope`), most recently active first, merged over every master
        (read whole: an asyncio merge of open-ended listings would hold every node's cursor)."""
        nodes: list[Any] = list(self._redis.get_primaries()) if self.cluster else [None]

        async def walk(node: Any) -> list[p.Member]:
            out: list[p.Member] = []
            cursor = "0"
            while True:
                got = await self.list_page(
                    scope,
                    cursor=cursor,
                    limit=page,
                    with_scopes=with_scopes,
                    with_devices=with_devices,
                    node=node,
                )
                out += got.members
                if got.cursor == "0":
                    return out
                cursor = got.cursor

        each = await asyncio.gather(*(walk(n) for n in nodes))
        return list(heapq.merge(*each, key=p.listing_order))

    async def subscribe(
        self,
        *,
        everyone: bool = False,
        users: Sequence[Id] = (),
        rooms: Sequence[Id] = (),
        channel: str = p.EVENTS_CHANNEL,
    ) -> AsyncSubscription:
        sub = AsyncSubscription(self._redis, everyone, users, rooms, channel)
        await sub.start()
        return sub


class AsyncSubscription(SubscriptionState):
    """As `events.Subscription`, for asyncio: iterate `events()`, then `await close()`."""

    async def start(self) -> None:
        self.pubsubs = await self._subscribe()

    async def _subscribe(self) -> list[Any]:
        manager = getattr(self.client, "nodes_manager", None)
        if manager is None:
            pubsub = self.client.pubsub()
            if self.channels:
                await pubsub.subscribe(*self.channels)
            if self.user_channels:
                await pubsub.ssubscribe(*self.user_channels)
            return [pubsub]
        pubsubs = []
        for node, channels in self.shard_plan(manager):
            pubsub = self._own_connection(node).pubsub()
            await pubsub.ssubscribe(*channels)
            pubsubs.append(pubsub)
        if self.channels:
            pubsub = self._own_connection(self.client.get_primaries()[0]).pubsub()
            await pubsub.subscribe(*self.channels)
            pubsubs.append(pubsub)
        return pubsubs

    @staticmethod
    def _own_connection(node: Any) -> Any:
        """A client of `node` with a pool of its own (see `events.Subscription`)."""
        kwargs = dict(node.connection_kwargs)
        kwargs.update(host=node.host, port=node.port)
        return redis.asyncio.Redis(**kwargs)

    async def _resubscribe_when_possible(self) -> None:
        self.lost = True
        await self._close_pubsubs()
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            manager = getattr(self.client, "nodes_manager", None)
            if manager is not None:
                await manager.initialize()
            self.pubsubs = await self._subscribe()
            self.resubscriptions += 1
            self.lost = False

    async def events(self, timeout: float | None = None) -> AsyncIterator[AnyEvent]:
        """The events as they come, without repeats; stops after `timeout` seconds with nothing
        new (never, when None)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            message = await self._next(0.1 if left is None else min(left, 0.1))
            event = None if message is None else self.fresh_event(message)
            if event is not None:
                if timeout is not None:
                    deadline = loop.time() + timeout
                yield event

    async def _next(self, wait: float) -> dict[str, Any] | None:
        if self.lost or not self.pubsubs:
            await asyncio.sleep(wait)
            if self.lost:
                await self._resubscribe_when_possible()
            return None
        pubsub = self.next_pubsub()
        try:
            message = await pubsub.get_message(timeout=wait / len(self.pubsubs))
        except (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            await self._resubscribe_when_possible()
            return None
        meaning = self.meaning(message)
        if meaning is True:
            await self._resubscribe_when_possible()
            return None
        return meaning or None

    async def _close_pubsubs(self) -> None:
        for pubsub in self.pubsubs:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        self.pubsubs = []

    async def close(self) -> None:
        await self._close_pubsubs()
