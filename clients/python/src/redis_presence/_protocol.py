"""What the module's commands take and reply, as plain functions: argument lists, reply parsers,
typed results, errors by kind, and the names the module gives keys and channels. No I/O, so the
synchronous and asyncio clients share every line of it, and it is tested without a server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

Id = str | bytes

SLOTS = 16384
EVENTS_CHANNEL = "presence:events"
ROOM_CHANNEL_PREFIX = "presence:room:"
_TAG_ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserPresence:
    """PRESENCE.GET: a user as the trusted application (or the viewer given) sees them."""

    user: str
    status: str
    devices: int
    last_seen: int | None
    since: int | None
    message: str | None
    manual: bool
    last_active: int | None
    scopes: list[str]
    last_device: str | None

    @property
    def online(self) -> bool:
        return self.status != "offline"


@dataclass(frozen=True)
class BulkRow:
    """One row of PRESENCE.BULK."""

    user: str
    status: str
    last_seen: int | None
    devices: int
    last_device: str | None = None


@dataclass(frozen=True)
class Device:
    """One connected device, from PRESENCE.DEVICES."""

    device: str
    connected_at: int
    last_heartbeat: int
    expires_at: int
    meta: str | None
    context: str | None

    def meta_json(self) -> dict[str, Any] | None:
        """The META as the JSON object it is."""
        return None if self.meta is None else dict(json.loads(self.meta))


@dataclass(frozen=True)
class Member:
    """One row of PRESENCE.LIST: a listed user, with their scopes and their devices in the room
    (and each device's member data) when asked for."""

    user: str
    status: str
    last_active: int
    scopes: list[str] | None = None
    devices: list[tuple[str, str | None]] | None = None


@dataclass(frozen=True)
class Page:
    """One reply of PRESENCE.LIST: the next cursor (`"0"` at the end) and the rows."""

    cursor: str
    members: list[Member]


@dataclass(frozen=True)
class Privacy:
    online: str
    lastseen: str


@dataclass(frozen=True)
class Event:
    """A change of a user, as published on the global channel and the user's own channel."""

    user: str
    status: str
    prev: str
    reason: str
    device: str
    devices: int
    last_seen: int | None
    message: str | None
    scopes: list[str]
    ts: int
    seq: int
    meta: dict[str, Any] | None = None
    payload: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class RoomEvent:
    """A change of a room, as published on the room's channel."""

    room: str
    user: str
    event: str
    reason: str
    device: str
    devices: int
    status: str
    message: str | None
    ts: int
    seq: int
    data: dict[str, Any] | None = None
    typing: bool | None = None


# --- errors -------------------------------------------------------------------------------------


class PresenceError(ResponseError):
    """An error reply of the module. The subclasses name the kinds a program reacts to; any other
    refusal (a value out of range, an unknown option) is an `InvalidArgument`."""


class InvalidArgument(PresenceError):
    pass


class DeviceNotConnected(PresenceError):
    pass


class TooManyDevices(PresenceError):
    pass


class TooManyRooms(PresenceError):
    pass


class NotInRoom(PresenceError):
    pass


class TooManyUsers(PresenceError):
    pass


class NotAnEvent(PresenceError):
    pass


class WrongDatabase(PresenceError):
    pass


class ReplicaWrite(PresenceError):
    """A write sent to a replica."""


class InternalError(PresenceError):
    """The module caught an internal error (a bug; the server log has the details)."""


_KINDS: list[tuple[str, type[PresenceError]]] = [
    ("device is not connected", DeviceNotConnected),
    ("connected devices (max-devices)", TooManyDevices),
    ("rooms (max-rooms)", TooManyRooms),
    ("device is not in room", NotInRoom),
    ("too many users:", TooManyUsers),
    ("EVENT must be an event payload", NotAnEvent),
    ("presence data lives in database 0", WrongDatabase),
    ("presence is written on the master only", ReplicaWrite),
    ("hit an internal error", InternalError),
]


def error_from(error: BaseException) -> BaseException:
    """The module's error reply as the exception of its kind (others are returned unchanged)."""
    if not isinstance(error, ResponseError) or isinstance(error, PresenceError):
        return error
    text = str(error)
    for needle, kind in _KINDS:
        if needle in text:
            return kind(text)
    if (
        text.startswith(("ERR ", "wrong number", "unknown option", "invalid cursor"))
        or " must " in text
    ):
        return InvalidArgument(text)
    return error


# --- replies ------------------------------------------------------------------------------------


def text(value: Any) -> str:
    """A reply string as `str` (bytes that are not UTF-8 kept as surrogates, so they round-trip)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def opt_text(value: Any) -> str | None:
    return None if value is None or value is False else text(value)


def opt_int(value: Any) -> int | None:
    return None if value is None or value is False else int(value)


def as_map(reply: Any) -> dict[str, Any]:
    """A map reply: a dict under RESP3, a flat name/value list under RESP2."""
    if isinstance(reply, Mapping):
        return {text(k): v for k, v in reply.items()}
    items = list(reply)
    return {text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def parse_get(reply: Any) -> UserPresence:
    m = as_map(reply)
    return UserPresence(
        user=text(m["user"]),
        status=text(m["status"]),
        devices=int(m["devices"]),
        last_seen=opt_int(m["last_seen"]),
        since=opt_int(m["since"]),
        message=opt_text(m["message"]),
        manual=bool(int(m["manual"])),
        last_active=opt_int(m["last_active"]),
        scopes=[text(s) for s in m.get("scopes") or []],
        last_device=opt_text(m.get("last_device")),
    )


def parse_bulk(reply: Any) -> list[BulkRow]:
    rows = []
    for row in reply:
        row = list(row)
        rows.append(
            BulkRow(
                user=text(row[0]),
                status=text(row[1]),
                last_seen=opt_int(row[2]),
                devices=int(row[3]),
                last_device=opt_text(row[4]) if len(row) > 4 else None,
            )
        )
    return rows


def parse_devices(reply: Any) -> list[Device]:
    out = []
    for item in reply:
        m = as_map(item)
        out.append(
            Device(
                device=text(m["device"]),
                connected_at=int(m["connected_at"]),
                last_heartbeat=int(m["last_heartbeat"]),
                expires_at=int(m["expires_at"]),
                meta=opt_text(m["meta"]),
                context=opt_text(m["context"]),
            )
        )
    return out


def parse_page(reply: Any, with_scopes: bool, with_devices: bool) -> Page:
    cursor, rows = reply
    members = []
    for row in rows:
        row = list(row)
        rest = row[3:]
        scopes = [text(s) for s in rest.pop(0)] if with_scopes else None
        devices = [(text(p[0]), opt_text(p[1])) for p in rest.pop(0)] if with_devices else None
        members.append(Member(text(row[0]), text(row[1]), int(row[2]), scopes, devices))
    return Page(text(cursor), members)


def parse_privacy(reply: Any) -> Privacy:
    m = as_map(reply)
    return Privacy(online=text(m["online"]), lastseen=text(m["lastseen"]))


def parse_fanout(reply: Any) -> list[tuple[str, dict[str, Any] | None]]:
    return [(text(v), None if j is None else dict(json.loads(j))) for v, j in reply]


def parse_room_pairs(reply: Any) -> list[tuple[str, str | None]]:
    return [(text(p[0]), opt_text(p[1])) for p in reply]


def parse_typers(reply: Any) -> list[tuple[str, str]]:
    return [(text(p[0]), text(p[1])) for p in reply]


def parse_event(payload: str | bytes) -> Event | RoomEvent:
    """An event payload as the module publishes it: a user event, or a room event."""
    raw = text(payload)
    d = json.loads(raw)

    def exact(name: str) -> str:
        coded = d.get(name + "_b64")
        if coded is None:
            return str(d[name])
        return base64.b64decode(coded).decode("utf-8", "surrogateescape")

    if "room" in d:
        return RoomEvent(
            room=exact("room"),
            user=exact("user"),
            event=d["event"],
            reason=d["reason"],
            device=exact("device"),
            devices=int(d["devices"]),
            status=d["status"],
            message=d.get("message"),
            ts=int(d["ts"]),
            seq=int(d["seq"]),
            data=d.get("data"),
            typing=d.get("typing"),
        )
    return Event(
        user=exact("user"),
        status=d["status"],
        prev=d["prev"],
        reason=d["reason"],
        device=exact("device"),
        devices=int(d["devices"]),
        last_seen=d.get("last_seen"),
        message=d.get("message"),
        scopes=list(d.get("scopes") or []),
        ts=int(d["ts"]),
        seq=int(d["seq"]),
        meta=d.get("meta"),
        payload=raw,
    )


# --- names --------------------------------------------------------------------------------------


def _bytes(value: Id) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: Id) -> int:
    """The cluster slot of a key or user id (hash tags included), as Redis computes it."""
    data = _bytes(key)
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return _crc16(data) % SLOTS


_tags: dict[int, bytes] = {}


def slot_tag(slot: int) -> bytes:
    """The shortest string of `0-9A-Za-z` whose slot is `slot`, found in the module's order."""
    if not _tags:
        n_letters = len(_TAG_ALPHABET)
        for length in (1, 2, 3):
            for n in range(n_letters**length):
                rest, candidate = n, bytearray()
                for _ in range(length):
                    candidate.append(_TAG_ALPHABET[rest % n_letters])
                    rest //= n_letters
                s = _crc16(bytes(candidate)) % SLOTS
                _tags.setdefault(s, bytes(candidate))
            if len(_tags) == SLOTS:
                break
    return _tags[slot]


def user_channel(user: Id) -> bytes:
    """The user's own event channel (sharded pub/sub), as the module names it: `presence:{user}`,
    or `presence:{<tag>}<user>` for an id with braces."""
    data = _bytes(user)
    if b"{" in data or b"}" in data:
        return b"presence:{" + slot_tag(key_slot(data)) + b"}" + data
    return b"presence:{" + data + b"}"


def room_channel(room: Id) -> bytes:
    return ROOM_CHANNEL_PREFIX.encode() + _bytes(room)


# --- arguments ----------------------------------------------------------------------------------


def options(**values: Any) -> list[Any]:
    """`NAME value` pairs for the options given (None: left out)."""
    out: list[Any] = []
    for name, value in values.items():
        if value is not None:
            out += [name.upper(), value]
    return out


def flags(**values: bool) -> list[str]:
    return [name.upper() for name, on in values.items() if on]


def meta_text(meta: str | Mapping[str, Any] | None) -> str | None:
    if meta is None or isinstance(meta, str):
        return meta
    return json.dumps(dict(meta), separators=(",", ":"))


class _Descending:
    """Bytes compared in descending order (a listing breaks ties by user id, descending)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def listing_order(member: Member) -> tuple[int, _Descending]:
    """A LIST row's place in the listing: most recently active first, then user ids in
    descending byte order, as each node orders it (so pages of several nodes merge)."""
    return (-member.last_active, _Descending(_bytes(member.user)))


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
