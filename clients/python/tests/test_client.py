"""The client against one server with the module loaded (REDIS_URL)."""

import os
import time
import unittest
import uuid
from typing import Any

import redis

from redis_presence import (
    DeviceNotConnected,
    Event,
    InvalidArgument,
    NotInRoom,
    Presence,
    RoomEvent,
    TooManyRooms,
    user_channel,
)

URL = os.environ.get("REDIS_URL")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@unittest.skipUnless(URL, "REDIS_URL names no server: the client tests need one")
class OneServer(unittest.TestCase):
    def setUp(self) -> None:
        assert URL is not None
        self.r = redis.Redis.from_url(URL)
        self.pr = Presence(self.r)

    def tearDown(self) -> None:
        self.r.close()

    def test_devices_status_and_reads_come_back_typed(self) -> None:
        user = unique("ann")
        self.assertEqual(self.pr.online(user, "phone", meta={"os": "ios"}, scopes=["zone:1"]), 1)
        self.assertTrue(self.pr.heartbeat(user, "phone"))
        self.assertFalse(self.pr.heartbeat(user, "laptop", ttl=30000, active=True))
        self.pr.status(user, "busy", message="In a meeting", for_ms=60000)
        got = self.pr.get(user)
        self.assertEqual((got.status, got.devices, got.message), ("busy", 2, "In a meeting"))
        self.assertTrue(got.manual and got.online)
        self.assertEqual(got.scopes, ["zone:1"])
        devices = {d.device: d for d in self.pr.devices(user)}
        self.assertEqual(devices["phone"].meta_json(), {"os": "ios"})
        self.pr.context(user, "phone", "chat:1")
        self.assertTrue(self.pr.in_context(user, "chat:1"))
        self.pr.context(user, "phone", None)
        self.assertFalse(self.pr.in_context(user, "chat:1"))
        self.pr.activity(user, "phone")
        self.assertEqual(self.pr.offline(user, "laptop"), 1)
        self.assertEqual(self.pr.offline(user, "phone"), 0)
        gone = self.pr.get(user)
        self.assertEqual((gone.status, gone.last_device), ("offline", "phone"))

    def test_bulk_of_any_length_keeps_the_order_asked(self) -> None:
        users = [unique(f"b{i}") for i in range(7)]
        for u in users[::2]:
            self.pr.online(u, "d")
        small = Presence(self.r, max_bulk=2)
        asked = users + users[:2]
        rows = small.bulk(asked, with_device=True)
        self.assertEqual([r.user for r in rows], asked)
        self.assertEqual([r.status for r in rows[:3]], ["online", "offline", "online"])

    def test_errors_are_exceptions_by_kind_and_change_nothing(self) -> None:
        user = unique("err")
        with self.assertRaises(DeviceNotConnected):
            self.pr.activity(user, "nope")
        with self.assertRaises(InvalidArgument):
            self.pr.online(user, "d", ttl=1)
        self.pr.online(user, "d")
        with self.assertRaises(NotInRoom):
            self.pr.typing(user, "d", unique("room"))
        old = str(self.r.config_get("presence.max-rooms")["presence.max-rooms"])
        self.r.config_set("presence.max-rooms", 1)
        try:
            self.pr.join(user, "d", unique("r1"))
            with self.assertRaises(TooManyRooms):
                self.pr.join(user, "d", unique("r2"))
        finally:
            self.r.config_set("presence.max-rooms", old)
        self.assertEqual(len(self.pr.rooms(user)), 1)

    def test_privacy_contacts_and_fanout(self) -> None:
        user, friend, other = unique("p"), unique("f"), unique("o")
        self.assertEqual(self.pr.privacy(user, online="contacts").online, "contacts")
        self.assertEqual(self.pr.add_contacts(user, friend), 1)
        self.assertEqual(self.pr.contacts(user), [friend])
        self.pr.online(user, "d")
        seen = dict(self.pr.fanout(user, viewers=[friend, other]))
        self.assertEqual(
            {v: (s or {}).get("status") for v, s in seen.items()},
            {friend: "online", other: "offline"},
        )
        self.assertEqual(self.pr.remove_contacts(user, friend), 1)

    def test_channels_are_computed_as_the_module_names_them(self) -> None:
        for user in ["plain", "{org:7}ann", "a}b{", "bin\xff\x00id", unique("x")]:
            raw = user.encode("latin-1")
            module: Any = self.r
            self.assertEqual(module.execute_command("PRESENCE.CHANNEL", raw), user_channel(raw))

    def test_rooms_typing_and_listings(self) -> None:
        room = unique("doc")
        ann, bob = unique("ann"), unique("bob")
        self.pr.online(ann, "phone")
        self.pr.online(ann, "laptop")
        self.pr.online(bob, "web")
        self.assertTrue(self.pr.join(ann, "phone", room, data={"color": "red"}))
        self.assertFalse(self.pr.join(ann, "phone", room))
        self.pr.join(ann, "laptop", room)
        self.pr.join(bob, "web", room)
        self.assertEqual(self.pr.rooms(ann), [room])
        self.assertEqual(self.pr.device_rooms(ann, "phone"), [(room, '{"color":"red"}')])
        self.pr.typing(bob, "web", room)
        self.assertEqual(self.pr.typers(room), [(bob, "web")])
        self.assertEqual(self.pr.count(room), 2)
        members = list(self.pr.members(room, page=1, with_devices=True))
        self.assertEqual([m.user for m in members], [bob, ann])
        self.assertEqual(members[1].devices, [("laptop", None), ("phone", '{"color":"red"}')])
        self.pr.typing(bob, "web", None)
        self.assertEqual(self.pr.typers(room), [])
        self.assertTrue(self.pr.leave(bob, "web", room))
        self.assertEqual(self.pr.count(room), 1)

    def test_a_subscription_delivers_typed_events_once(self) -> None:
        user, room = unique("ev"), unique("room")
        sub = self.pr.subscribe(everyone=True, users=[user], rooms=[room])
        try:
            self.pr.online(user, "d")
            self.pr.join(user, "d", room)
            self.pr.offline(user, "d")
            got = list(sub.events(timeout=1.0))
        finally:
            sub.close()
        mine = [e for e in got if e.user == user]
        kinds = [(type(e).__name__, e.status if isinstance(e, Event) else e.event) for e in mine]
        # Each user event came on two channels (global and the user's own): delivered once.
        # A change publishes the user's event, then the room events it causes.
        self.assertEqual(
            kinds,
            [
                ("Event", "online"),
                ("RoomEvent", "join"),
                ("Event", "offline"),
                ("RoomEvent", "leave"),
            ],
        )
        seqs = [e.seq for e in mine]
        self.assertEqual(len(set(seqs)), len(seqs))
        room_events = [e for e in mine if isinstance(e, RoomEvent)]
        self.assertEqual({e.room for e in room_events}, {room})
        # A user event passes through FANOUT as it came.
        first = next(e for e in mine if isinstance(e, Event))
        self.assertIsNotNone(first.payload)

    def test_a_pipeline_sends_queued_commands_and_replies_in_order(self) -> None:
        users = [unique("pipe") for _ in range(4)]
        pipe = self.pr.pipeline()
        for user in users:
            pipe.online(user, "d").join(user, "d", "pipe-room").get(user)
        pipe.activity(users[0], "nope")
        replies = pipe.execute()
        self.assertEqual(replies[0::3][:4], [1, 1, 1, 1])
        self.assertEqual([r.status for r in replies[2:12:3]], ["online"] * 4)
        self.assertIsInstance(replies[-1], DeviceNotConnected)
        for user in users:
            self.pr.offline(user, "d")

    def test_sweep_removes_what_is_due_and_count_follows(self) -> None:
        user = unique("due")
        before = self.pr.count()
        self.pr.online(user, "d", ttl=100)
        self.assertEqual(self.pr.count(), before + 1)
        time.sleep(0.15)
        self.pr.sweep()
        self.assertEqual(self.pr.get(user).status, "offline")
        self.assertEqual(self.pr.count(), before)


if __name__ == "__main__":
    unittest.main()
