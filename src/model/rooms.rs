//! Rooms: the channels, documents and calls a user is in, per device, with member data and typing.
//!
//! A device joins and leaves rooms one at a time; a user is in a room while any of their devices
//! is, or while the room is one of their scopes (a room the user is in with every device, set by
//! ONLINE's SCOPE). A device that leaves (OFFLINE, timeout) takes its rooms and its typing with it.
//!
//! What other users see of a user's rooms (nothing while the user looks offline) is compared
//! before and after each change, and each difference is announced as a [`RoomEvent`] on the
//! room's own channel: a device joining or leaving, its member data changing, the user's status or
//! message changing while in the room, a device starting or stopping typing.

use super::{Millis, Presence, Reason, Record, Refusal, Span, Status};
use std::collections::{BTreeMap, BTreeSet};

/// The holder of a scope: the user with every device, written as an empty device id (a real
/// device id is 1 to 512 bytes).
pub const SCOPE_HOLDER: &[u8] = b"";

/// A device typing in a room, until a moment when it stops on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Typing {
    pub room: Vec<u8>,
    pub until: Millis,
}

/// What changed for a room's subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomChange {
    /// A device (or the user, for a scope) entered the room.
    Join,
    /// A device (or the user) left it.
    Leave,
    /// A member's data, status or message changed.
    Update,
    /// A device started or stopped typing there.
    Typing,
}

impl RoomChange {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomChange::Join => "join",
            RoomChange::Leave => "leave",
            RoomChange::Update => "update",
            RoomChange::Typing => "typing",
        }
    }
}

/// A change of one room as its subscribers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomEvent {
    pub room: Vec<u8>,
    pub change: RoomChange,
    pub reason: Reason,
    /// The device that joined, left, changed or types (empty: the user, for a scope or a status).
    pub device: Vec<u8>,
    /// How many of the user's holders (devices, and the scope) are in the room afterwards: 0 when
    /// the user is no longer there.
    pub devices: usize,
    /// The user's status and message afterwards, as everyone else sees them.
    pub status: Status,
    pub message: Option<String>,
    /// The device's member data afterwards (join and update).
    pub data: Option<String>,
    /// For a typing change: whether the device is typing afterwards.
    pub typing: bool,
    pub ts: Millis,
    pub seq: u64,
}

/// One room as others see the user in it: each holder with its data, and the devices typing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    holders: BTreeMap<Vec<u8>, Option<String>>,
    typing: BTreeSet<Vec<u8>>,
}

/// Everything a room's subscribers see of a user: the rooms, and the status and message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomsSeen {
    rooms: BTreeMap<Vec<u8>, Seen>,
    status: Option<Status>,
    message: Option<String>,
}

impl Record {
    /// The rooms the user is in (their scopes and every device's rooms), sorted and distinct.
    pub fn rooms(&self) -> BTreeSet<&[u8]> {
        self.scopes
            .iter()
            .map(Vec::as_slice)
            .chain(
                self.devices
                    .values()
                    .flat_map(|d| d.rooms.keys().map(Vec::as_slice)),
            )
            .collect()
    }

    /// The rooms one device joined, each with its member data there.
    pub fn device_rooms(&self, device: &[u8]) -> Vec<(Vec<u8>, Option<String>)> {
        self.devices
            .get(device)
            .map(|d| d.rooms.iter().map(|(r, data)| (r.clone(), data.clone())))
            .into_iter()
            .flatten()
            .collect()
    }

    /// Whether `device` may type in `room`: it joined it, or the room is one of the user's
    /// scopes (the user is in it with every device).
    fn may_type_in(&self, device: &[u8], room: &[u8]) -> bool {
        self.devices
            .get(device)
            .is_some_and(|d| d.rooms.contains_key(room))
            || self.scopes.iter().any(|s| s.as_slice() == room)
    }

    /// The user's devices in `room` with their member data there: every device when the room is
    /// one of the user's scopes, else the devices that joined it.
    pub fn devices_in(&self, room: &[u8]) -> Vec<(Vec<u8>, Option<String>)> {
        let scope = self.scopes.iter().any(|s| s.as_slice() == room);
        self.devices
            .iter()
            .filter_map(|(id, d)| match d.rooms.get(room) {
                Some(data) => Some((id.clone(), data.clone())),
                None => scope.then(|| (id.clone(), None)),
            })
            .collect()
    }

    /// The devices typing in `room` at `now`.
    pub fn typing_in(&self, room: &[u8], now: Millis) -> Vec<Vec<u8>> {
        self.live_devices(now)
            .filter(|(_, d)| {
                d.typing
                    .as_ref()
                    .is_some_and(|t| t.room == room && now < t.until)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The earliest moment a device stops typing on its own.
    pub fn typing_ends(&self) -> Option<Millis> {
        self.devices
            .values()
            .filter_map(|d| d.typing.as_ref().map(|t| t.until))
            .min()
    }

    /// What the rooms' subscribers see of the user now: nothing while they look offline.
    pub fn rooms_seen(&self) -> RoomsSeen {
        let status = self.status.public();
        if status == Status::Offline {
            return RoomsSeen::default();
        }
        let mut rooms: BTreeMap<Vec<u8>, Seen> = BTreeMap::new();
        for scope in &self.scopes {
            let seen = rooms.entry(scope.clone()).or_default();
            seen.holders.insert(SCOPE_HOLDER.to_vec(), None);
        }
        for (id, device) in &self.devices {
            for (room, data) in &device.rooms {
                let seen = rooms.entry(room.clone()).or_default();
                seen.holders.insert(id.clone(), data.clone());
            }
            if let Some(typing) = &device.typing {
                if let Some(seen) = rooms.get_mut(&typing.room) {
                    seen.typing.insert(id.clone());
                }
            }
        }
        RoomsSeen {
            rooms,
            status: Some(status),
            message: self.manual.as_ref().and_then(|m| m.message.clone()),
        }
    }
}

/// The changes that turn what subscribers saw (`before`) into what they see (`after`), room by
/// room in order: leaves, joins, updates, then typing. `seq` numbers each one.
fn differences(
    before: &RoomsSeen,
    after: &RoomsSeen,
    reason: Reason,
    at: Millis,
    mut seq: impl FnMut() -> u64,
) -> Vec<RoomEvent> {
    let empty = Seen::default();
    let names: BTreeSet<&Vec<u8>> = before.rooms.keys().chain(after.rooms.keys()).collect();
    let status = after.status.unwrap_or(Status::Offline);
    let person_changed = before.status.is_some()
        && after.status.is_some()
        && (before.status != after.status || before.message != after.message);
    let mut events = Vec::new();
    for room in names {
        let old = before.rooms.get(room).unwrap_or(&empty);
        let new = after.rooms.get(room).unwrap_or(&empty);
        let devices = new.holders.len();
        let mut event = |change, reason, device: &[u8], data: Option<&String>, typing| {
            events.push(RoomEvent {
                room: room.clone(),
                change,
                reason,
                device: device.to_vec(),
                devices,
                status,
                message: after.message.clone(),
                data: data.cloned(),
                typing,
                ts: at,
                seq: seq(),
            })
        };
        for id in old
            .holders
            .keys()
            .filter(|id| !new.holders.contains_key(*id))
        {
            event(RoomChange::Leave, reason, id, None, false);
        }
        let mut updated = false;
        for (id, data) in &new.holders {
            match old.holders.get(id) {
                None => event(RoomChange::Join, reason, id, data.as_ref(), false),
                Some(old_data) if old_data != data => {
                    updated = true;
                    event(RoomChange::Update, Reason::Data, id, data.as_ref(), false);
                }
                Some(_) => {}
            }
        }
        if person_changed && !updated && !old.holders.is_empty() && !new.holders.is_empty() {
            event(RoomChange::Update, reason, SCOPE_HOLDER, None, false);
        }
        for id in old.typing.difference(&new.typing) {
            event(RoomChange::Typing, reason, id, None, false);
        }
        for id in new.typing.difference(&old.typing) {
            event(RoomChange::Typing, reason, id, None, true);
        }
    }
    events
}

impl Presence {
    /// Announces what the rooms' subscribers see change since the last announcement, caused by
    /// `reason` at `at`.
    pub(super) fn announce_rooms(&mut self, reason: Reason, at: Millis) {
        let Some(before) = &self.rooms_seen else {
            return; // a record read to be shown
        };
        let seen = self.record.rooms_seen();
        if &seen == before {
            return;
        }
        let mut seq = self.record.seq;
        let events = differences(before, &seen, reason, at, || {
            seq = super::next_seq(seq, at);
            seq
        });
        self.record.seq = seq;
        self.room_events.extend(events);
        self.rooms_seen = Some(seen);
    }

    /// The room events announced so far, oldest first; none are left.
    pub fn take_room_events(&mut self) -> Vec<RoomEvent> {
        std::mem::take(&mut self.room_events)
    }

    /// A connected device joins `room`, with member data (`None` keeps the data it has there, if
    /// it is in it already). Expects a settled record. Whether it joined (false: it was there).
    pub fn join(
        &mut self,
        device: &[u8],
        room: &[u8],
        data: Option<String>,
        now: Millis,
        max_rooms: usize,
    ) -> Result<bool, Refusal> {
        let d = self
            .record
            .devices
            .get_mut(device)
            .ok_or(Refusal::NotConnected)?;
        let held = d.rooms.len();
        let joined = match d.rooms.get_mut(room) {
            Some(old) => {
                if data.is_some() {
                    *old = data;
                }
                false
            }
            None if held >= max_rooms => return Err(Refusal::TooManyRooms(held)),
            None => {
                d.rooms.insert(room.to_vec(), data);
                true
            }
        };
        self.announce_rooms(Reason::Join, now);
        Ok(joined)
    }

    /// A device leaves `room` (and stops typing there). Expects a settled record. Whether it was
    /// in it (a device that is not connected is in no room).
    pub fn leave(&mut self, device: &[u8], room: &[u8], now: Millis) -> bool {
        let Some(d) = self.record.devices.get_mut(device) else {
            return false;
        };
        let was = d.rooms.remove(room).is_some();
        if d.typing.as_ref().is_some_and(|t| t.room == room) {
            d.typing = None;
        }
        self.announce_rooms(Reason::Leave, now);
        was
    }

    /// A connected device starts typing in `room` (one the user is in), or keeps typing there,
    /// until `for_ms` from now; `None` stops its typing. Typing is activity. Expects a settled
    /// record.
    pub fn type_in(
        &mut self,
        device: &[u8],
        room: Option<&[u8]>,
        for_ms: Span,
        now: Millis,
    ) -> Result<(), Refusal> {
        if !self.record.devices.contains_key(device) {
            return Err(Refusal::NotConnected);
        }
        if let Some(room) = room {
            if !self.record.may_type_in(device, room) {
                return Err(Refusal::NotInRoom);
            }
            self.activity(now);
        }
        if let Some(d) = self.record.devices.get_mut(device) {
            d.typing = room.map(|room| Typing {
                room: room.to_vec(),
                until: for_ms.after(now),
            });
        }
        let reason = if room.is_some() {
            Reason::Typing
        } else {
            Reason::Stopped
        };
        self.announce_rooms(reason, now);
        Ok(())
    }

    /// Stops the typing of one device, or of every device (`None`): a message was sent. Announced
    /// with the change that follows (the activity).
    pub fn stop_typing(&mut self, device: Option<&[u8]>) {
        for (id, d) in self.record.devices.iter_mut() {
            if device.is_none_or(|device| device == id.as_slice()) {
                d.typing = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Manual, Rules};

    const TTL: Span = Span(1000);

    fn connected(devices: &[&[u8]]) -> Presence {
        let mut p = Presence::with_rules(Rules::default());
        for d in devices {
            p.connect(d, TTL, None, None, 0, 32).unwrap();
        }
        p.take_room_events();
        p
    }

    /// `(room, change, reason, device, devices, typing)` of each event, taken.
    fn taken(p: &mut Presence) -> Vec<(String, &'static str, &'static str, String, usize, bool)> {
        p.take_room_events()
            .into_iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.room).into_owned(),
                    e.change.as_str(),
                    e.reason.as_str(),
                    String::from_utf8_lossy(&e.device).into_owned(),
                    e.devices,
                    e.typing,
                )
            })
            .collect()
    }

    fn ev(
        room: &str,
        change: &'static str,
        reason: &'static str,
        device: &str,
        devices: usize,
    ) -> (String, &'static str, &'static str, String, usize, bool) {
        (room.into(), change, reason, device.into(), devices, false)
    }

    #[test]
    fn a_user_is_in_a_room_while_any_device_is() {
        let mut p = connected(&[b"phone", b"laptop"]);
        assert_eq!(p.join(b"phone", b"r", None, 10, 8), Ok(true));
        assert_eq!(p.join(b"laptop", b"r", Some("{}".into()), 11, 8), Ok(true));
        assert_eq!(p.join(b"phone", b"r", None, 12, 8), Ok(false));
        assert_eq!(
            taken(&mut p),
            vec![
                ev("r", "join", "join", "phone", 1),
                ev("r", "join", "join", "laptop", 2)
            ]
        );
        assert!(p.leave(b"phone", b"r", 20));
        assert!(!p.leave(b"phone", b"r", 21));
        assert_eq!(p.rooms().len(), 1, "the laptop is still there");
        assert!(p.leave(b"laptop", b"r", 22));
        assert!(p.rooms().is_empty());
        assert_eq!(
            taken(&mut p),
            vec![
                ev("r", "leave", "leave", "phone", 1),
                ev("r", "leave", "leave", "laptop", 0)
            ]
        );
    }

    #[test]
    fn joining_needs_a_connected_device_and_stays_under_max_rooms() {
        let mut p = connected(&[b"phone"]);
        assert_eq!(
            p.join(b"tablet", b"r", None, 1, 8),
            Err(Refusal::NotConnected)
        );
        p.join(b"phone", b"a", None, 1, 2).unwrap();
        p.join(b"phone", b"b", None, 1, 2).unwrap();
        assert_eq!(
            p.join(b"phone", b"c", None, 1, 2),
            Err(Refusal::TooManyRooms(2))
        );
        assert_eq!(p.join(b"phone", b"a", None, 1, 2), Ok(false));
    }

    #[test]
    fn data_is_kept_unless_replaced_and_a_change_is_an_update() {
        let mut p = connected(&[b"phone"]);
        p.join(b"phone", b"r", Some(r#"{"a":1}"#.into()), 1, 8)
            .unwrap();
        p.join(b"phone", b"r", None, 2, 8).unwrap();
        assert_eq!(
            p.device_rooms(b"phone"),
            vec![(b"r".to_vec(), Some(r#"{"a":1}"#.to_string()))]
        );
        p.join(b"phone", b"r", Some(r#"{"a":2}"#.into()), 3, 8)
            .unwrap();
        let events = p.take_room_events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].change, RoomChange::Update);
        assert_eq!(events[1].reason, Reason::Data);
        assert_eq!(events[1].data.as_deref(), Some(r#"{"a":2}"#));
    }

    #[test]
    fn a_device_that_leaves_or_times_out_takes_its_rooms_and_typing() {
        let mut p = connected(&[b"phone", b"laptop"]);
        p.join(b"phone", b"r", None, 0, 8).unwrap();
        p.join(b"laptop", b"s", None, 0, 8).unwrap();
        p.type_in(b"phone", Some(b"r"), Span(5000), 100).unwrap();
        p.take_room_events();
        p.disconnect(b"laptop", 200);
        assert_eq!(
            taken(&mut p),
            vec![ev("s", "leave", "disconnect", "laptop", 0)]
        );
        // The phone's deadline (its last heartbeat at 0, TTL 1000) comes before its typing ends.
        p.settle(2000);
        let mut typing_stop = ev("r", "typing", "timeout", "phone", 0);
        typing_stop.5 = false;
        assert_eq!(
            taken(&mut p),
            vec![ev("r", "leave", "timeout", "phone", 0), typing_stop]
        );
        assert!(p.rooms().is_empty());
        assert_eq!(p.typing_ends(), None);
    }

    #[test]
    fn typing_needs_the_room_stops_on_its_own_and_by_activity() {
        let mut p = connected(&[b"phone"]);
        assert_eq!(
            p.type_in(b"phone", Some(b"r"), Span(500), 10),
            Err(Refusal::NotInRoom)
        );
        p.join(b"phone", b"r", None, 10, 8).unwrap();
        p.take_room_events();
        p.type_in(b"phone", Some(b"r"), Span(500), 20).unwrap();
        assert_eq!(p.typing_in(b"r", 30), vec![b"phone".to_vec()]);
        assert_eq!(p.last_active, Some(20), "typing is activity");
        assert_eq!(p.user_timer(), Some(520), "the sweep ends it");
        // Typing again only moves the bound: nothing new to announce.
        p.type_in(b"phone", Some(b"r"), Span(500), 300).unwrap();
        p.settle(799);
        assert_eq!(p.typing_in(b"r", 799), vec![b"phone".to_vec()]);
        p.settle(800);
        assert!(p.typing_in(b"r", 800).is_empty());
        let events = p.take_room_events();
        assert_eq!(
            events
                .iter()
                .map(|e| (e.reason, e.typing, e.ts))
                .collect::<Vec<_>>(),
            vec![(Reason::Typing, true, 20), (Reason::Timeout, false, 800)]
        );
        // A message sent ends it.
        p.type_in(b"phone", Some(b"r"), Span(500), 900).unwrap();
        p.stop_typing(Some(b"phone"));
        p.activity(950);
        let events = p.take_room_events();
        assert_eq!(
            events.last().map(|e| (e.reason, e.typing)),
            Some((Reason::Active, false))
        );
        // And so does NONE.
        p.type_in(b"phone", Some(b"r"), Span(500), 960).unwrap();
        p.type_in(b"phone", None, Span(500), 970).unwrap();
        let events = p.take_room_events();
        assert_eq!(
            events.last().map(|e| (e.reason, e.typing)),
            Some((Reason::Stopped, false))
        );
    }

    #[test]
    fn scopes_are_rooms_held_by_the_user() {
        let mut p = Presence::with_rules(Rules::default());
        p.connect(b"phone", TTL, None, Some(vec![b"zone".to_vec()]), 0, 32)
            .unwrap();
        assert_eq!(taken(&mut p), vec![ev("zone", "join", "connect", "", 1)]);
        p.connect(b"laptop", TTL, None, None, 10, 32).unwrap();
        assert_eq!(
            p.devices_in(b"zone"),
            vec![(b"laptop".to_vec(), None), (b"phone".to_vec(), None)]
        );
        p.type_in(b"laptop", Some(b"zone"), Span(500), 20).unwrap();
        p.disconnect(b"laptop", 30);
        p.disconnect(b"phone", 40);
        let leave = taken(&mut p)
            .into_iter()
            .filter(|e| e.1 == "leave")
            .collect::<Vec<_>>();
        assert_eq!(leave, vec![ev("zone", "leave", "disconnect", "", 0)]);
    }

    #[test]
    fn status_changes_are_updates_and_invisibility_leaves_every_room() {
        let mut p = connected(&[b"phone"]);
        p.join(b"phone", b"a", None, 1, 8).unwrap();
        p.join(b"phone", b"b", None, 1, 8).unwrap();
        p.take_room_events();
        let manual = |status| Manual {
            status,
            message: None,
            until: None,
        };
        p.set_manual(Some(manual(Status::Busy)), 10);
        assert_eq!(
            taken(&mut p),
            vec![
                ev("a", "update", "manual", "", 1),
                ev("b", "update", "manual", "", 1)
            ]
        );
        p.set_manual(Some(manual(Status::Invisible)), 20);
        assert_eq!(
            taken(&mut p),
            vec![
                ev("a", "leave", "manual", "phone", 0),
                ev("b", "leave", "manual", "phone", 0)
            ]
        );
        // Rooms joined while invisible are not announced until the user shows again.
        p.join(b"phone", b"c", None, 30, 8).unwrap();
        assert!(p.take_room_events().is_empty());
        p.set_manual(None, 40);
        assert_eq!(
            taken(&mut p)
                .into_iter()
                .map(|e| (e.0, e.1))
                .collect::<Vec<_>>(),
            vec![
                ("a".to_string(), "join"),
                ("b".to_string(), "join"),
                ("c".to_string(), "join")
            ]
        );
    }

    #[test]
    fn room_events_share_the_users_seq() {
        let mut p = Presence::with_rules(Rules::default());
        p.connect(b"phone", TTL, None, None, 5, 32).unwrap();
        p.join(b"phone", b"r", None, 6, 8).unwrap();
        let user = p.take_events();
        let room = p.take_room_events();
        assert_eq!(user[0].seq, 5000);
        assert_eq!(room[0].seq, 5001);
        assert_eq!(p.seq, 5001);
    }
}
