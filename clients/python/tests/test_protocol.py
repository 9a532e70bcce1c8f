"""The pure half of the client: names, replies, errors, events. No server needed."""

import unittest

from redis.exceptions import ResponseError

from redis_presence import _protocol as p


class Names(unittest.TestCase):
    def test_key_slots_follow_redis_cluster(self) -> None:
        # Known slots (redis-cli CLUSTER KEYSLOT).
        self.assertEqual(p.key_slot("foo"), 12182)
        self.assertEqual(p.key_slot("{user1000}.following"), p.key_slot("user1000"))
        self.assertEqual(p.key_slot("{}x"), p.key_slot(b"{}x"))

    def test_user_channels_are_named_as_the_module_names_them(self) -> None:
        self.assertEqual(p.user_channel("alice"), b"presence:{alice}")
        # An id with braces gets the shortest tag of its slot.
        self.assertEqual(p.user_channel("{org:7}ann"), b"presence:{VM4}{org:7}ann")
        channel = p.user_channel(b"a}b")
        self.assertEqual(p.key_slot(channel), p.key_slot(b"a}b"))
        self.assertEqual(p.room_channel("doc:9"), b"presence:room:doc:9")


class Replies(unittest.TestCase):
    def test_get_reads_resp2_and_resp3_alike(self) -> None:
        flat = [
            b"user",
            b"alice",
            b"status",
            b"busy",
            b"devices",
            2,
            b"last_seen",
            5,
            b"since",
            4,
            b"message",
            b"hi",
            b"manual",
            1,
            b"last_active",
            None,
            b"scopes",
            [b"zone:1"],
            b"last_device",
            None,
        ]
        as_map = dict(zip(flat[::2], flat[1::2], strict=False))
        for reply in (flat, as_map):
            got = p.parse_get(reply)
            self.assertEqual(got.status, "busy")
            self.assertEqual((got.devices, got.last_seen, got.manual), (2, 5, True))
            self.assertEqual(got.scopes, ["zone:1"])
            self.assertIsNone(got.last_active)

    def test_list_rows_carry_scopes_and_devices_when_asked(self) -> None:
        reply = [b"0", [[b"bob", b"online", 7, [b"z"], [[b"web", None], [b"phone", b"{}"]]]]]
        page = p.parse_page(reply, True, True)
        self.assertEqual(page.cursor, "0")
        self.assertEqual(page.members[0].scopes, ["z"])
        self.assertEqual(page.members[0].devices, [("web", None), ("phone", "{}")])

    def test_errors_become_their_kind(self) -> None:
        cases = {
            "device is not connected": p.DeviceNotConnected,
            "user already has 32 connected devices (max-devices)": p.TooManyDevices,
            "device is already in 256 rooms (max-rooms)": p.TooManyRooms,
            "device is not in room (PRESENCE.JOIN it first)": p.NotInRoom,
            "TTL must be an integer from 100 to 604800000 milliseconds, got '1'": p.InvalidArgument,
        }
        for text, kind in cases.items():
            self.assertIsInstance(p.error_from(ResponseError(text)), kind, text)
        other = ResponseError("something else entirely")
        self.assertIs(p.error_from(other), other)

    def test_events_parse_into_their_kind(self) -> None:
        user = p.parse_event(
            b'{"user":"bad\\ufffd","user_b64":"YmFk/w==","status":"online","prev":"offline",'
            b'"reason":"connect","device":"d","devices":1,"last_seen":5,"message":null,'
            b'"scopes":["z"],"meta":{"os":"ios"},"ts":5,"seq":5000}'
        )
        assert isinstance(user, p.Event)
        self.assertEqual(user.user.encode("utf-8", "surrogateescape"), b"bad\xff")
        self.assertEqual(user.meta, {"os": "ios"})
        room = p.parse_event(
            '{"room":"r","user":"u","event":"typing","reason":"typing","device":"d",'
            '"devices":1,"status":"online","message":null,"typing":true,"ts":1,"seq":2}'
        )
        assert isinstance(room, p.RoomEvent)
        self.assertTrue(room.typing)

    def test_listing_order_is_the_nodes_order(self) -> None:
        rows = [
            p.Member("ab", "online", 5),
            p.Member("abc", "online", 5),
            p.Member("z", "online", 9),
        ]
        ordered = sorted(rows, key=p.listing_order)
        self.assertEqual([m.user for m in ordered], ["z", "abc", "ab"])


if __name__ == "__main__":
    unittest.main()
