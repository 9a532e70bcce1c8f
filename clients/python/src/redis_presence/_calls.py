"""Each command of the module as a `Call`: its arguments and the parser of its reply. The
synchronous and asyncio clients run the same calls, so what a command sends and how its reply is
read is written once."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import _protocol as p
from ._protocol import Id

T = TypeVar("T")
Meta = None | str | Mapping[str, Any]


@dataclass(frozen=True)
class Call(Generic[T]):
    args: list[Any]
    parse: Callable[[Any], T]


def _int(reply: Any) -> int:
    return int(reply)


def _bool(reply: Any) -> bool:
    return bool(reply)


def _none(reply: Any) -> None:
    return None


def _texts(reply: Any) -> list[str]:
    return [p.text(item) for item in reply]


def online(
    user: Id, device: Id, ttl: int | None, meta: Meta, scopes: Sequence[Id] | None
) -> Call[int]:
    args: list[Any] = ["PRESENCE.ONLINE", user, device]
    args += p.options(ttl=ttl, meta=p.meta_text(meta))
    if scopes:
        args += ["SCOPE", *scopes]
    return Call(args, _int)


def heartbeat(user: Id, device: Id, ttl: int | None, active: bool, meta: Meta) -> Call[bool]:
    args = ["PRESENCE.HEARTBEAT", user, device, *p.options(ttl=ttl, meta=p.meta_text(meta))]
    return Call([*args, *p.flags(active=active)], _bool)


def offline(user: Id, device: Id) -> Call[int]:
    return Call(["PRESENCE.OFFLINE", user, device], _int)


def get(user: Id, viewer: Id | None) -> Call[p.UserPresence]:
    return Call(["PRESENCE.GET", user, *p.options(viewer=viewer)], p.parse_get)


def bulk(users: Sequence[Id], viewer: Id | None, with_device: bool) -> Call[list[p.BulkRow]]:
    tail = [*p.options(viewer=viewer), *p.flags(withdevice=with_device)]
    return Call(["PRESENCE.BULK", *users, *tail], p.parse_bulk)


def devices(user: Id) -> Call[list[p.Device]]:
    return Call(["PRESENCE.DEVICES", user], p.parse_devices)


def status(user: Id, status: str, message: str | None, for_ms: int | None) -> Call[None]:
    args = ["PRESENCE.STATUS", user, status, *p.options(message=message)]
    if for_ms is not None:
        args += ["FOR", for_ms]
    return Call(args, _none)


def activity(user: Id, device: Id | None) -> Call[None]:
    return Call(["PRESENCE.ACTIVITY", user, *([] if device is None else [device])], _none)


def context(user: Id, device: Id, context: Id | None) -> Call[None]:
    return Call(["PRESENCE.CONTEXT", user, device, "NONE" if context is None else context], _none)


def in_context(user: Id, context: Id) -> Call[bool]:
    return Call(["PRESENCE.INCONTEXT", user, context], _bool)


def set_privacy(user: Id, online: str | None, lastseen: str | None) -> Call[None]:
    return Call(["PRESENCE.PRIVACY", user, *p.options(online=online, lastseen=lastseen)], _none)


def privacy(user: Id) -> Call[p.Privacy]:
    return Call(["PRESENCE.PRIVACY", user], p.parse_privacy)


def contacts(user: Id, action: str, contacts: Sequence[Id]) -> Call[int]:
    return Call(["PRESENCE.CONTACTS", user, action, *contacts], _int)


def contact_list(user: Id) -> Call[list[str]]:
    return Call(["PRESENCE.CONTACTS", user, "LIST"], _texts)


def fanout(
    user: Id, event: str | bytes | p.Event | None, viewers: Sequence[Id] | None
) -> Call[list[tuple[str, dict[str, Any] | None]]]:
    args: list[Any] = ["PRESENCE.FANOUT", user]
    if event is not None:
        args += ["EVENT", event.payload if isinstance(event, p.Event) else event]
    args += ["CONTACTS"] if viewers is None else ["VIEWERS", *viewers]
    return Call(args, p.parse_fanout)


def channel(user: Id) -> Call[str]:
    return Call(["PRESENCE.CHANNEL", user], p.text)


def join(user: Id, device: Id, room: Id, data: Meta) -> Call[bool]:
    return Call(["PRESENCE.JOIN", user, device, room, *p.options(data=p.meta_text(data))], _bool)


def leave(user: Id, device: Id, room: Id) -> Call[bool]:
    return Call(["PRESENCE.LEAVE", user, device, room], _bool)


def rooms(user: Id) -> Call[list[str]]:
    return Call(["PRESENCE.ROOMS", user], _texts)


def device_rooms(user: Id, device: Id) -> Call[list[tuple[str, str | None]]]:
    return Call(["PRESENCE.ROOMS", user, device], p.parse_room_pairs)


def typing(user: Id, device: Id, room: Id | None) -> Call[None]:
    return Call(["PRESENCE.TYPING", user, device, "NONE" if room is None else room], _none)


def typers(room: Id) -> Call[list[tuple[str, str]]]:
    return Call(["PRESENCE.TYPERS", room], p.parse_typers)


def count(scope: Id | None) -> Call[int]:
    return Call(["PRESENCE.COUNT", *p.options(scope=scope)], _int)


def sweep(limit: int | None) -> Call[int]:
    return Call(["PRESENCE.SWEEP", *p.options(limit=limit)], _int)


def list_page(
    scope: Id | None, cursor: str, limit: int | None, with_scopes: bool, with_devices: bool
) -> Call[p.Page]:
    args = [
        "PRESENCE.LIST",
        *p.options(scope=scope, limit=limit, cursor=cursor),
        *p.flags(withscopes=with_scopes, withdevices=with_devices),
    ]
    return Call(args, lambda reply: p.parse_page(reply, with_scopes, with_devices))


def bulk_plan(
    users: Sequence[Id], max_bulk: int, slot_of: Callable[[Id], int]
) -> list[tuple[int, list[int]]]:
    """How a BULK of any length is sent: per slot (`slot_of`), chunks of at most `max_bulk`
    positions of `users`, each with the slot it goes to."""
    by_slot: dict[int, list[int]] = {}
    for i, user in enumerate(users):
        by_slot.setdefault(slot_of(user), []).append(i)
    return [
        (slot, list(chunk))
        for slot, positions in by_slot.items()
        for chunk in p.chunks(positions, max_bulk)
    ]
