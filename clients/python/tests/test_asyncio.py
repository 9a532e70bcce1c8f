"""The asyncio client against one server with the module loaded (REDIS_URL)."""

import os
import unittest
import uuid

import redis.asyncio

from redis_presence import DeviceNotConnected, Event, RoomEvent
from redis_presence.asyncio import AsyncPresence

URL = os.environ.get("REDIS_URL")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@unittest.skipUnless(URL, "REDIS_URL names no server: the client tests need one")
class OneServerAsync(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        assert URL is not None
        self.r = redis.asyncio.Redis.from_url(URL)
        self.pr = AsyncPresence(self.r, max_bulk=2)

    async def asyncTearDown(self) -> None:
        await self.r.aclose()

    async def test_commands_are_awaited_with_the_same_results(self) -> None:
        user, room = unique("ann"), unique("room")
        self.assertEqual(await self.pr.online(user, "phone", meta={"os": "ios"}), 1)
        self.assertTrue(await self.pr.heartbeat(user, "phone"))
        await self.pr.status(user, "dnd", message="Focus")
        got = await self.pr.get(user)
        self.assertEqual((got.status, got.message), ("dnd", "Focus"))
        others = [unique("x") for _ in range(3)]
        rows = await self.pr.bulk([*others, user])
        self.assertEqual([r.user for r in rows], [*others, user])
        self.assertEqual(rows[-1].status, "dnd")
        self.assertTrue(await self.pr.join(user, "phone", room, data={"k": 1}))
        await self.pr.typing(user, "phone", room)
        self.assertEqual(await self.pr.typers(room), [(user, "phone")])
        self.assertEqual(await self.pr.count(room), 1)
        self.assertEqual([m.user for m in await self.pr.members(room)], [user])
        with self.assertRaises(DeviceNotConnected):
            await self.pr.join(user, "tablet", room)

    async def test_a_subscription_delivers_typed_events_once(self) -> None:
        user, room = unique("ev"), unique("room")
        sub = await self.pr.subscribe(everyone=True, users=[user], rooms=[room])
        try:
            await self.pr.online(user, "d")
            await self.pr.join(user, "d", room)
            await self.pr.offline(user, "d")
            got = [e async for e in sub.events(timeout=1.0) if e.user == user]
        finally:
            await sub.close()
        kinds = [(type(e).__name__, e.status if isinstance(e, Event) else e.event) for e in got]
        self.assertEqual(
            kinds,
            [
                ("Event", "online"),
                ("RoomEvent", "join"),
                ("Event", "offline"),
                ("RoomEvent", "leave"),
            ],
        )
        self.assertTrue(all(e.room == room for e in got if isinstance(e, RoomEvent)))


if __name__ == "__main__":
    unittest.main()
