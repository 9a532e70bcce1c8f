//! How a [`Record`] is laid out: the fields of the user's hash, and each device's deadline in the
//! slot's due index.
//!
//! | field          | value                                       |
//! |----------------|---------------------------------------------|
//! | `since`        | ms when the current status began            |
//! | `last_seen`    | ms of the latest departure                  |
//! | `seq`          | number of the latest event announced, counted from `since` × 1000 when near it |
//! | `status`       | the status as last settled (absent: offline, or online when a device is registered) |
//! | `manual`       | the status set by hand                      |
//! | `message`      | its custom message                          |
//! | `manual_until` | ms when it returns to automatic             |
//! | `last_active`  | ms of the latest activity (absent: as `since`; empty: never) |
//! | `leaving`      | `<ms>:<disconnect|timeout>:<device>`: the last device left, grace running |
//! | `last_device`  | the device that left last                   |
//! | `scope:<name>` | empty: the user is in scope `<name>`            |
//! | `dev:<id>`     | `<connected_at>:<ttl>`, then `:<order>` when not 0 (see [`Device::order`]); `<ttl>` alone when connected at `since` with order 0 |
//! | `meta:<id>`    | the device's META JSON text (when given)    |
//! | `ctx:<id>`     | the conversation the device has open        |
//! | `room:<n>:<id>:<room>` | the device (`<n>` bytes long) is in `<room>`; the value is its member data |
//! | `typing:<id>`  | `<until>:<room>`: the device types in `<room>` until `<until>` |
//!
//! A listed user (see [`Record::listed`]) also has an entry, scored by last activity, in the slot's
//! listing of everyone; their rooms (scopes included) are listed in memory (`listing::rooms`).
//!
//! A device's deadline lives only in the due index, and its last heartbeat is the deadline minus
//! its TTL, so a heartbeat rewrites one index entry and nothing else. Values are decimal text so the
//! hash stays readable with `HGETALL` and small enough for the compact listpack encoding. Decoding
//! ignores fields it does not know or cannot read (and devices without a deadline), so a hash
//! edited by hand never makes a command fail.

use crate::args::MAX_TTL;
use crate::keys;
use crate::model::{Device, Leaving, Manual, Millis, Reason, Record, Span, Status, Typing};
use std::collections::BTreeMap;

pub const SINCE: &[u8] = b"since";
pub const LAST_SEEN: &[u8] = b"last_seen";
pub const SEQ: &[u8] = b"seq";
pub const STATUS: &[u8] = b"status";
pub const MANUAL: &[u8] = b"manual";
pub const MESSAGE: &[u8] = b"message";
pub const MANUAL_UNTIL: &[u8] = b"manual_until";
pub const LAST_ACTIVE: &[u8] = b"last_active";
pub const LEAVING: &[u8] = b"leaving";
pub const LAST_DEVICE: &[u8] = b"last_device";
const DEVICE_PREFIX: &[u8] = b"dev:";
const META_PREFIX: &[u8] = b"meta:";
const CONTEXT_PREFIX: &[u8] = b"ctx:";
const SCOPE_PREFIX: &[u8] = b"scope:";
const ROOM_PREFIX: &[u8] = b"room:";
const TYPING_PREFIX: &[u8] = b"typing:";

/// Field name to value, in a stable order.
pub type Fields = BTreeMap<Vec<u8>, Vec<u8>>;

fn prefixed(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut field = Vec::with_capacity(prefix.len() + id.len());
    field.extend_from_slice(prefix);
    field.extend_from_slice(id);
    field
}

fn parse_millis(value: &[u8]) -> Option<Millis> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The value of a device's `dev:` field: its TTL alone when it connected when the user's status
/// began (`since`) and is first in its millisecond (the usual single device: an integer, which
/// the hash stores in a few bytes).
pub fn device_value(
    connected_at: Millis,
    Span(ttl): Span,
    order: u64,
    since: Option<Millis>,
) -> Vec<u8> {
    if order == 0 && since == Some(connected_at) {
        ttl.to_string().into_bytes()
    } else if order == 0 {
        format!("{connected_at}:{ttl}").into_bytes()
    } else {
        format!("{connected_at}:{ttl}:{order}").into_bytes()
    }
}

/// `(connected_at, ttl, order)` from a device's `dev:` field; `connected_at` is `None` in the
/// short form (the record's `since`).
pub fn parse_device_value(value: &[u8]) -> Option<(Option<Millis>, Span, u64)> {
    let mut parts = value.split(|&b| b == b':');
    let first = parse_millis(parts.next()?)?;
    let Some(ttl) = parts.next() else {
        return (first > 0).then_some((None, Span(first), 0));
    };
    let ttl = parse_millis(ttl)?;
    let order = match parts.next() {
        Some(order) => std::str::from_utf8(order).ok()?.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || ttl <= 0 {
        return None;
    }
    Some((Some(first), Span(ttl), order))
}

/// Stored `seq` values below this (in size) count from the record's `since` in microseconds
/// (`since` × 1000, where a user's numbering starts: see `model::next_seq`), so a user's usual
/// `seq` takes a small integer instead of sixteen digits; larger ones are the number itself.
const SEQ_RELATIVE_BELOW: i64 = 1_000_000_000_000;

/// The stored form of `seq` for a record whose status began at `since`.
fn seq_value(seq: u64, since: Option<Millis>) -> Vec<u8> {
    let base = since.and_then(|since| since.checked_mul(1000));
    let relative = base
        .and_then(|base| i64::try_from(seq).ok()?.checked_sub(base))
        .filter(|delta| delta.unsigned_abs() < SEQ_RELATIVE_BELOW.unsigned_abs());
    match relative {
        Some(delta) => delta.to_string().into_bytes(),
        None => seq.to_string().into_bytes(),
    }
}

/// `seq` from its stored form and the record's `since` (0, which starts the numbering afresh,
/// when it cannot be one the module wrote).
fn parse_seq(value: i64, since: Option<Millis>) -> u64 {
    let seq = if value.unsigned_abs() < SEQ_RELATIVE_BELOW.unsigned_abs() {
        since
            .and_then(|since| since.checked_mul(1000))
            .and_then(|base| base.checked_add(value))
    } else {
        Some(value)
    };
    seq.and_then(|seq| u64::try_from(seq).ok())
        .filter(|&n| n <= crate::model::MAX_SEQ)
        .unwrap_or(0)
}

fn parse_leaving(value: &[u8]) -> Option<Leaving> {
    let mut parts = value.splitn(3, |&b| b == b':');
    let at = parse_millis(parts.next()?)?;
    let reason = match parts.next()? {
        b"disconnect" => Reason::Disconnect,
        b"timeout" => Reason::Timeout,
        _ => return None,
    };
    Some(Leaving {
        at,
        reason,
        device: parts.next()?.to_vec(),
    })
}

/// The name of a device's field.
pub fn device_field(id: &[u8]) -> Vec<u8> {
    prefixed(DEVICE_PREFIX, id)
}

/// The name of the field that puts a device in a room: `room:<length of id>:<id>:<room>` (the
/// device and the room as a [`keys::id_pair`]).
pub fn room_field(device: &[u8], room: &[u8]) -> Vec<u8> {
    prefixed(ROOM_PREFIX, &keys::id_pair(device, room))
}

fn typing_value(typing: &Typing) -> Vec<u8> {
    let mut value = format!("{}:", typing.until).into_bytes();
    value.extend_from_slice(&typing.room);
    value
}

fn parse_typing(value: &[u8]) -> Option<Typing> {
    let colon = value.iter().position(|&b| b == b':')?;
    let until = parse_millis(value.get(..colon)?)?;
    let room = value.get(colon + 1..)?;
    (!room.is_empty()).then(|| Typing {
        room: room.to_vec(),
        until,
    })
}

/// Builds a record from the hash's fields, fed one at a time as a scan yields them, and then each
/// device's deadline. Copies only what it keeps (META and contexts only when asked for).
pub struct Decoder {
    record: Record,
    status: Option<Status>,
    /// The `last_active` field, if present (its value may say "never").
    last_active: Option<Option<Millis>>,
    /// The `seq` field as stored (relative to `since`, see [`seq_value`]).
    seq: Option<i64>,
    manual: Option<Status>,
    message: Option<String>,
    manual_until: Option<Millis>,
    devices: Vec<(Vec<u8>, Option<Millis>, Span, u64)>,
    metas: Vec<(Vec<u8>, String)>,
    contexts: Vec<(Vec<u8>, Vec<u8>)>,
    rooms: Vec<(Vec<u8>, Vec<u8>, Option<String>)>,
    typing: Vec<(Vec<u8>, Typing)>,
    /// Whether META, contexts, rooms and typing are kept (writes and the reads that show them).
    with_meta: bool,
}

impl Decoder {
    pub fn new(with_meta: bool) -> Self {
        Decoder {
            record: Record::default(),
            status: None,
            last_active: None,
            seq: None,
            manual: None,
            message: None,
            manual_until: None,
            devices: Vec::new(),
            metas: Vec::new(),
            contexts: Vec::new(),
            rooms: Vec::new(),
            typing: Vec::new(),
            with_meta,
        }
    }

    pub fn field(&mut self, field: &[u8], value: &[u8]) {
        if field == SINCE {
            self.record.since = parse_millis(value);
        } else if field == LAST_SEEN {
            self.record.last_seen = parse_millis(value);
        } else if field == SEQ {
            // Anything else than a number the module could have written restarts the sequence
            // (see `model::next_seq`), which stays above what consumers saw.
            self.seq = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<i64>().ok());
        } else if field == STATUS {
            self.status = Status::parse(value);
        } else if field == MANUAL {
            self.manual = Status::parse(value).filter(|s| *s != Status::Offline);
        } else if field == MESSAGE {
            self.message = std::str::from_utf8(value).ok().map(str::to_owned);
        } else if field == MANUAL_UNTIL {
            self.manual_until = parse_millis(value);
        } else if field == LAST_ACTIVE {
            self.last_active = Some(parse_millis(value));
        } else if field == LEAVING {
            self.record.leaving = parse_leaving(value);
        } else if field == LAST_DEVICE {
            self.record.last_device = Some(value.to_vec()).filter(|d| !d.is_empty());
        } else if let Some(id) = field.strip_prefix(DEVICE_PREFIX) {
            if let Some((connected_at, ttl, order)) = parse_device_value(value) {
                self.devices.push((id.to_vec(), connected_at, ttl, order));
            }
        } else if let Some(id) = field.strip_prefix(META_PREFIX) {
            if let (true, Ok(text)) = (self.with_meta, std::str::from_utf8(value)) {
                self.metas.push((id.to_vec(), text.to_owned()));
            }
        } else if let Some(scope) = field.strip_prefix(SCOPE_PREFIX) {
            if !scope.is_empty() {
                self.record.scopes.push(scope.to_vec());
            }
        } else if let Some(rest) = field.strip_prefix(ROOM_PREFIX) {
            let pair = keys::parse_id_pair(rest).filter(|(id, _)| !id.is_empty());
            if let (true, Some((id, room))) = (self.with_meta, pair) {
                let data = std::str::from_utf8(value).ok().filter(|d| !d.is_empty());
                self.rooms
                    .push((id.to_vec(), room.to_vec(), data.map(str::to_owned)));
            }
        } else if let Some(id) = field.strip_prefix(TYPING_PREFIX) {
            if let (true, Some(typing)) = (self.with_meta, parse_typing(value)) {
                self.typing.push((id.to_vec(), typing));
            }
        } else if let Some(id) = field.strip_prefix(CONTEXT_PREFIX) {
            if self.with_meta {
                self.contexts.push((id.to_vec(), value.to_vec()));
            }
        }
    }

    /// The record at `now`, with each device's deadline from the index (see [`lost_device`] for
    /// a device whose deadline is missing or cannot be one).
    pub fn finish(
        mut self,
        mut deadline: impl FnMut(&[u8]) -> Option<Millis>,
        now: Millis,
    ) -> Record {
        // Fields come in hash order; the record keeps scopes sorted.
        self.record.scopes.sort_unstable();
        self.record.last_active = self.last_active.unwrap_or(self.record.since);
        let since = self.record.since;
        self.record.seq = self.seq.map_or(0, |value| parse_seq(value, since));
        for (id, connected_at, ttl, order) in self.devices {
            // The short form needs the record's `since`.
            let Some(connected_at) = connected_at.or(since) else {
                continue;
            };
            let mut device = match deadline(&id) {
                // No heartbeat sets a deadline further than its TTL ahead (with a margin of the
                // longest TTL for clocks that differ: another node's, a step).
                Some(deadline) if deadline <= ttl.after(now).saturating_add(MAX_TTL) => Device {
                    connected_at,
                    last_heartbeat: ttl.before(deadline),
                    ttl,
                    meta: None,
                    context: None,
                    order,
                    ..Device::default()
                },
                _ => lost_device(connected_at, ttl, now),
            };
            device.order = order;
            self.record.devices.insert(id, device);
        }
        for (id, text) in self.metas {
            if let Some(device) = self.record.devices.get_mut(&id) {
                device.meta = Some(text);
            }
        }
        for (id, context) in self.contexts {
            if let Some(device) = self.record.devices.get_mut(&id) {
                device.context = Some(context);
            }
        }
        for (id, room, data) in self.rooms {
            if let Some(device) = self.record.devices.get_mut(&id) {
                device.rooms.insert(room, data);
            }
        }
        for (id, typing) in self.typing {
            if let Some(device) = self.record.devices.get_mut(&id) {
                device.typing = Some(typing);
            }
        }
        self.record.manual = self.manual.map(|status| Manual {
            status,
            message: self.message,
            until: self.manual_until,
        });
        // The stored status, unless the devices say otherwise (a hand-edited record): no device
        // (outside a grace period) is offline, and devices with no stored status are online.
        self.record.status = match (self.status, self.record.devices.is_empty()) {
            // Within a grace period the user keeps their status with no device.
            (Some(status), true) if self.record.leaving.is_some() => status,
            (_, true) => Status::Offline,
            (None | Some(Status::Offline), false) => Status::Online,
            (Some(status), false) => status,
        };
        self.record
    }
}

/// A registered device whose deadline was lost (its index entry is missing: the index key was
/// evicted or deleted; or its score is no deadline a heartbeat could set). The last moment it is
/// known to have been there is when it connected: it counts as timed out then, `ttl` later, or at
/// `now` if that is sooner, so reads show it gone and the next write of the user (the sweep's
/// reconciliation makes one) announces its timeout and drops what is left of it.
pub fn lost_device(connected_at: Millis, ttl: Span, now: Millis) -> Device {
    let last_heartbeat = connected_at.min(now);
    let deadline = ttl.after(connected_at).min(now).max(last_heartbeat);
    Device {
        connected_at,
        last_heartbeat,
        ttl: Span(deadline.saturating_sub(last_heartbeat)),
        meta: None,
        context: None,
        order: 0,
        ..Device::default()
    }
}

/// Builds a record at `now` from the hash's fields and each device's deadline (`None`: not in
/// the index).
pub fn decode<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    deadline: impl FnMut(&[u8]) -> Option<Millis>,
    now: Millis,
) -> Record {
    let mut decoder = Decoder::new(true);
    for (field, value) in fields {
        decoder.field(field, value);
    }
    decoder.finish(deadline, now)
}

/// The hash fields that represent `record`.
pub fn encode(record: &Record) -> Fields {
    let mut fields = Fields::new();
    if let Some(since) = record.since {
        fields.insert(SINCE.to_vec(), since.to_string().into_bytes());
    }
    if let Some(seen) = record.last_seen {
        fields.insert(LAST_SEEN.to_vec(), seen.to_string().into_bytes());
    }
    if record.seq > 0 {
        fields.insert(SEQ.to_vec(), seq_value(record.seq, record.since));
    }
    // The usual statuses are left out (about 16 bytes a user): offline, and online with a device.
    let implied = match record.status {
        Status::Offline => true,
        Status::Online => !record.devices.is_empty(),
        _ => false,
    };
    if !implied {
        fields.insert(STATUS.to_vec(), record.status.as_str().as_bytes().to_vec());
    }
    if let Some(manual) = &record.manual {
        fields.insert(MANUAL.to_vec(), manual.status.as_str().as_bytes().to_vec());
        if let Some(message) = &manual.message {
            fields.insert(MESSAGE.to_vec(), message.clone().into_bytes());
        }
        if let Some(until) = manual.until {
            fields.insert(MANUAL_UNTIL.to_vec(), until.to_string().into_bytes());
        }
    }
    // Left out when it is `since` (a user active since connecting, about 23 bytes a user).
    if record.last_active != record.since {
        let value = record
            .last_active
            .map_or_else(Vec::new, |active| active.to_string().into_bytes());
        fields.insert(LAST_ACTIVE.to_vec(), value);
    }
    for scope in &record.scopes {
        fields.insert(prefixed(SCOPE_PREFIX, scope), Vec::new());
    }
    if let Some(device) = &record.last_device {
        fields.insert(LAST_DEVICE.to_vec(), device.clone());
    }
    if let Some(leaving) = &record.leaving {
        let mut value = format!("{}:{}:", leaving.at, leaving.reason.as_str()).into_bytes();
        value.extend_from_slice(&leaving.device);
        fields.insert(LEAVING.to_vec(), value);
    }
    for (id, device) in &record.devices {
        fields.insert(
            device_field(id),
            device_value(device.connected_at, device.ttl, device.order, record.since),
        );
        if let Some(meta) = &device.meta {
            fields.insert(prefixed(META_PREFIX, id), meta.clone().into_bytes());
        }
        if let Some(context) = &device.context {
            fields.insert(prefixed(CONTEXT_PREFIX, id), context.clone());
        }
        for (room, data) in &device.rooms {
            let value = data.clone().map(String::into_bytes).unwrap_or_default();
            fields.insert(room_field(id, room), value);
        }
        if let Some(typing) = &device.typing {
            fields.insert(prefixed(TYPING_PREFIX, id), typing_value(typing));
        }
    }
    fields
}

/// The listings the record is in (`None`: everyone; else a room, scopes included), with its
/// score in them.
pub fn listings(record: &Record) -> BTreeMap<Option<&[u8]>, Millis> {
    let Some(score) = record.listed() else {
        return BTreeMap::new();
    };
    std::iter::once(None)
        .chain(record.rooms().into_iter().map(Some))
        .map(|listing| (listing, score))
        .collect()
}

/// Each device's deadline: its score in the due index.
pub fn deadlines(record: &Record) -> BTreeMap<&[u8], Millis> {
    record
        .devices
        .iter()
        .map(|(id, d)| (id.as_slice(), d.deadline()))
        .collect()
}

/// What turns the stored form of `before` into that of `after`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Hash fields to set and to delete.
    pub set: Vec<(Vec<u8>, Vec<u8>)>,
    pub delete: Vec<Vec<u8>>,
    /// Devices whose deadline is new or moved, and devices gone from the index.
    pub due_set: Vec<(Vec<u8>, Millis)>,
    pub due_delete: Vec<Vec<u8>>,
    /// Listings (`None`: everyone; else a scope) the user enters or moves in, and leaves.
    pub listed_set: Vec<(Option<Vec<u8>>, Millis)>,
    pub listed_delete: Vec<Option<Vec<u8>>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.delete.is_empty()
            && self.due_set.is_empty()
            && self.due_delete.is_empty()
            && self.listed_set.is_empty()
            && self.listed_delete.is_empty()
    }
}

pub fn changes(before: &Record, after: &Record) -> Changes {
    let old = encode(before);
    let mut new = encode(after);
    let delete = old
        .keys()
        .filter(|field| !new.contains_key(*field))
        .cloned()
        .collect();
    new.retain(|field, value| old.get(field) != Some(value));
    let (old_due, new_due) = (deadlines(before), deadlines(after));
    let (old_listed, new_listed) = (listings(before), listings(after));
    Changes {
        listed_set: new_listed
            .iter()
            .filter(|(listing, score)| old_listed.get(*listing) != Some(*score))
            .map(|(listing, score)| (listing.map(<[u8]>::to_vec), *score))
            .collect(),
        listed_delete: old_listed
            .keys()
            .filter(|listing| !new_listed.contains_key(*listing))
            .map(|listing| listing.map(<[u8]>::to_vec))
            .collect(),
        set: new.into_iter().collect(),
        delete,
        due_set: new_due
            .iter()
            .filter(|(id, deadline)| old_due.get(*id) != Some(*deadline))
            .map(|(id, deadline)| (id.to_vec(), *deadline))
            .collect(),
        due_delete: old_due
            .keys()
            .filter(|id| !new_due.contains_key(*id))
            .map(|id| id.to_vec())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Presence, Rules};

    fn sample() -> Presence {
        let mut r = Presence::default();
        r.connect(
            b"phone",
            Span(1000),
            Some("{\"os\":\"ios\"}".into()),
            None,
            100,
            8,
        )
        .unwrap();
        let scopes = vec![b"zone:1".to_vec(), b"org\0".to_vec()];
        r.connect(b"a:b\0\xff", Span(2000), None, Some(scopes), 200, 8)
            .unwrap();
        r.set_context(b"phone", Some(b"chat\0:1".to_vec()));
        r.last_seen = Some(50);
        r
    }

    fn as_slices(fields: &Fields) -> Vec<(&[u8], &[u8])> {
        fields
            .iter()
            .map(|(f, v)| (f.as_slice(), v.as_slice()))
            .collect()
    }

    fn round_trip(r: &Record) -> Record {
        let due = deadlines(r);
        decode(
            as_slices(&encode(r)),
            |id| due.get(id).copied(),
            Millis::MAX,
        )
    }

    #[test]
    fn records_round_trip() {
        let mut r = sample();
        r.heartbeat(b"phone", Some(Span(700)), None, Span(1000), 450, 8)
            .unwrap();
        assert_eq!(round_trip(&r), r.record);
        assert_eq!(round_trip(&Record::default()), Record::default());
    }

    #[test]
    fn implied_fields_are_left_out_and_read_back() {
        let mut r = Presence::default();
        r.connect(b"d", Span(1000), None, None, 100, 8).unwrap();
        let fields = encode(&r);
        assert!(!fields.contains_key(STATUS), "online with a device");
        assert!(!fields.contains_key(LAST_ACTIVE), "active since connecting");
        assert_eq!(round_trip(&r), r.record);
        r.activity(150);
        assert_eq!(encode(&r)[LAST_ACTIVE], b"150");
        assert_eq!(round_trip(&r), r.record);
        // Known, but never active: an explicit "never".
        let never = Record {
            since: Some(5),
            ..Record::default()
        };
        assert_eq!(encode(&never)[LAST_ACTIVE], b"");
        assert_eq!(round_trip(&never), never);
        // Within a grace period the status is kept with no device.
        let mut leaving = Presence::with_rules(Rules {
            grace: Span(500),
            ..Rules::default()
        });
        leaving
            .connect(b"d", Span(1000), None, None, 100, 8)
            .unwrap();
        leaving.disconnect(b"d", 200);
        assert_eq!(encode(&leaving)[STATUS], b"online");
        let back = round_trip(&leaving);
        assert_eq!(back, leaving.record);
    }

    #[test]
    fn the_layout_is_readable() {
        let r = sample();
        let fields = encode(&r);
        // Connected when the status began (`since`): the TTL alone.
        assert_eq!(fields[&b"dev:phone".to_vec()], b"1000");
        assert_eq!(fields[&b"dev:a:b\0\xff".to_vec()], b"200:2000:1");
        assert_eq!(deadlines(&r)[b"phone".as_slice()], 1100);
        assert_eq!(fields[&b"meta:phone".to_vec()], b"{\"os\":\"ios\"}");
        assert_eq!(fields[&b"since".to_vec()], b"100");
        assert_eq!(fields[&b"last_seen".to_vec()], b"50");
        assert_eq!(fields[&b"scope:zone:1".to_vec()], b"");
    }

    #[test]
    fn listings_follow_visibility_and_activity() {
        let mut r = sample();
        let everyone_and_scopes = |r: &Record| -> Vec<(Option<Vec<u8>>, Millis)> {
            listings(r)
                .into_iter()
                .map(|(l, s)| (l.map(<[u8]>::to_vec), s))
                .collect()
        };
        let listed = everyone_and_scopes(&r);
        assert_eq!(
            listed,
            vec![
                (None, 200),
                (Some(b"org\0".to_vec()), 200),
                (Some(b"zone:1".to_vec()), 200)
            ]
        );
        let before = r.clone();
        r.activity(300);
        let c = changes(&before, &r);
        assert_eq!(c.listed_set.len(), 3);
        assert!(c.listed_delete.is_empty());
        let before = r.clone();
        r.set_manual(
            Some(Manual {
                status: Status::Invisible,
                message: None,
                until: None,
            }),
            400,
        );
        let c = changes(&before, &r);
        assert!(c.listed_set.is_empty());
        assert_eq!(c.listed_delete.len(), 3);
        assert!(listings(&r).is_empty());
    }

    #[test]
    fn the_usual_device_and_seq_are_stored_short_and_the_long_forms_still_read() {
        let mut r = Presence::default();
        r.connect(b"d1", Span(30_000), None, None, 1_795_325_923_140, 8)
            .unwrap();
        let fields = encode(&r);
        // Connected when the status began: the TTL alone; seq counted from since × 1000.
        assert_eq!(fields[&b"dev:d1".to_vec()], b"30000");
        let seq = String::from_utf8(fields[&b"seq".to_vec()].clone()).unwrap();
        assert!(seq.len() <= 2, "seq stored as {seq}");
        assert_eq!(round_trip(&r), r.record);
        // A later status keeps the device's own connection time.
        r.set_manual(
            Some(Manual {
                status: Status::Busy,
                message: None,
                until: None,
            }),
            1_795_325_999_000,
        );
        let fields = encode(&r);
        assert_eq!(fields[&b"dev:d1".to_vec()], b"1795325923140:30000");
        assert_eq!(round_trip(&r), r.record);
        // What earlier versions wrote: absolute seq, devices with their connection time.
        let old: Vec<(&[u8], &[u8])> = vec![
            (b"since", b"1795325923140"),
            (b"seq", b"1795325923140002"),
            (b"dev:d1", b"1795325923140:30000"),
        ];
        let read = decode(old, |_| Some(1_795_325_953_140), 1_795_325_923_200);
        assert_eq!(read.seq, 1_795_325_923_140_002);
        assert_eq!(
            read.devices[b"d1".as_slice()].connected_at,
            1_795_325_923_140
        );
        // A short device needs `since`; a number far from since × 1000 is absolute.
        let orphan: Vec<(&[u8], &[u8])> = vec![(b"dev:d1", b"30000"), (b"seq", b"-5")];
        let read = decode(orphan, |_| Some(10), 0);
        assert!(read.devices.is_empty());
        assert_eq!(read.seq, 0);
        assert_eq!(parse_seq(-5, Some(1)), 995);
        assert_eq!(
            parse_seq(SEQ_RELATIVE_BELOW, Some(1)),
            SEQ_RELATIVE_BELOW as u64
        );
        assert_eq!(parse_seq(-SEQ_RELATIVE_BELOW, None), 0);
        assert_eq!(parse_seq(5, Some(Millis::MAX)), 0);
        assert_eq!(parse_seq(i64::MIN, Some(1)), 0);
    }

    #[test]
    fn unreadable_and_unknown_fields_are_ignored() {
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b"since", b"soon"),
            (b"dev:x", b"1"),
            (b"dev:y", b"1:2:3:4"),
            (b"dev:z", b"1:-5"),
            (b"dev:unindexed", b"1:2"),
            (b"meta:orphan", b"{}"),
            (b"other", b"1"),
            (b"dev:ok", b"1:3"),
        ];
        let r = decode(fields, |id| (id != b"unindexed").then_some(10), 100);
        assert_eq!(r.since, None);
        assert_eq!(r.devices.len(), 2);
        let ok = &r.devices[b"ok".as_slice()];
        assert_eq!(
            (ok.connected_at, ok.last_heartbeat, ok.ttl),
            (1, 7, Span(3))
        );
        // A device missing from the index timed out when it may first have left.
        let lost = &r.devices[b"unindexed".as_slice()];
        assert_eq!((lost.last_heartbeat, lost.deadline()), (1, 3));
    }

    #[test]
    fn a_device_with_a_lost_or_impossible_deadline_counts_as_timed_out() {
        let fields: Vec<(&[u8], &[u8])> =
            vec![(b"dev:far", b"500:1000"), (b"dev:new", b"900:1000")];
        // 1e300 in the index reads as the largest time: no heartbeat at 1000 sets it.
        let r = decode(fields, |_| Some(Millis::MAX), 1000);
        let far = &r.devices[b"far".as_slice()];
        assert_eq!((far.last_heartbeat, far.deadline()), (500, 1000));
        let new = &r.devices[b"new".as_slice()];
        assert_eq!((new.last_heartbeat, new.deadline()), (900, 1000));
        assert_eq!(r.live_count(1000), 0);
        // One that connected "in the future" is gone now too.
        let d = lost_device(5000, Span(1000), 1000);
        assert_eq!((d.last_heartbeat, d.deadline()), (1000, 1000));
    }

    #[test]
    fn changes_touch_only_what_changed() {
        let before = sample();
        let mut after = before.clone();
        after
            .heartbeat(b"phone", None, None, Span(1000), 300, 8)
            .unwrap();
        let c = changes(&before, &after);
        // A heartbeat moves the deadline and nothing else.
        assert!(c.set.is_empty() && c.delete.is_empty() && c.due_delete.is_empty());
        assert_eq!(c.due_set, vec![(b"phone".to_vec(), 1300)]);

        let mut gone = after.clone();
        gone.disconnect(b"phone", 400);
        let c = changes(&after, &gone);
        // The device leaves with its META and its context.
        assert_eq!(
            c.delete,
            vec![
                b"ctx:phone".to_vec(),
                b"dev:phone".to_vec(),
                b"meta:phone".to_vec()
            ]
        );
        assert_eq!(
            c.set,
            vec![
                (b"last_device".to_vec(), b"phone".to_vec()),
                (b"last_seen".to_vec(), b"400".to_vec())
            ]
        );
        assert_eq!(c.due_delete, vec![b"phone".to_vec()]);
        assert!(c.due_set.is_empty());
        let mut last = gone.clone();
        last.disconnect(b"a:b\0\xff", 500);
        let c = changes(&gone, &last);
        // The user went offline: an event, and one per scope left, so seq moves on (from the
        // first connect's 100000: the scopes' joins took two numbers, the scope's event one),
        // stored from the new `since` × 1000: 100006 - 500000.
        assert!(
            c.set.contains(&(b"seq".to_vec(), b"-399994".to_vec())),
            "{c:?}"
        );
        assert!(changes(&gone, &gone).is_empty());
    }

    #[test]
    fn rooms_and_typing_round_trip_and_read_back_only_as_written() {
        let mut r = sample();
        r.join(b"a:b\0\xff", b"chat:1", Some(r#"{"r":1}"#.into()), 250, 8)
            .unwrap();
        r.join(b"phone", b"x", None, 250, 8).unwrap();
        r.type_in(b"a:b\0\xff", Some(b"chat:1"), Span(900), 260)
            .unwrap();
        let fields = encode(&r);
        assert_eq!(fields[&b"room:5:a:b\0\xff:chat:1".to_vec()], br#"{"r":1}"#);
        assert_eq!(fields[&b"room:5:phone:x".to_vec()], b"");
        assert_eq!(fields[&b"typing:a:b\0\xff".to_vec()], b"1160:chat:1");
        assert_eq!(round_trip(&r), r.record);
        assert_eq!(
            listings(&r).keys().copied().collect::<Vec<_>>(),
            vec![
                None,
                Some(&b"chat:1"[..]),
                Some(&b"org\0"[..]),
                Some(&b"x"[..]),
                Some(&b"zone:1"[..])
            ]
        );
        // Fields of a device that is not connected, or that do not parse, are ignored.
        for (field, value) in [
            (&b"room:5:tablet:x"[..], &b""[..]),
            (b"room:99:phone:x", b""),
            (b"room:5:phone", b""),
            (b"room:5:phonex", b""),
            (b"room:x:phone:x", b""),
            (b"typing:phone", b"soon:x"),
            (b"typing:tablet", b"5:x"),
        ] {
            let mut with = fields.clone();
            with.retain(|f, _| !f.starts_with(b"room:5:") && !f.starts_with(b"typing:"));
            with.insert(field.to_vec(), value.to_vec());
            let back = decode(as_slices(&with), |_| Some(1300), 300);
            assert!(
                back.devices[&b"phone".to_vec()].rooms.is_empty(),
                "{field:?}"
            );
            assert!(
                back.devices[&b"phone".to_vec()].typing.is_none(),
                "{field:?}"
            );
        }
    }

    #[test]
    fn a_departure_in_grace_round_trips() {
        let mut r = Presence::with_rules(Rules {
            grace: Span(1000),
            ..Rules::default()
        });
        r.connect(b"d:1", Span(5000), None, None, 0, 8).unwrap();
        r.disconnect(b"d:1", 100);
        assert_eq!(encode(&r)[&b"leaving".to_vec()], b"100:disconnect:d:1");
        let back = round_trip(&r);
        assert_eq!(back, r.record);
    }
}
