//! The presence model: what a user's record holds and how commands and time change it.
//!
//! Pure logic with no Redis types, so every rule is unit-tested without a server. Time is passed in
//! (milliseconds since the epoch); nothing here reads a clock.
//!
//! The rule that keeps reads exact without a timer: everything that changes with time (a device's
//! deadline, the end of a manual status, the moment a user goes idle) is decided from stored
//! instants. Reads compute the view at `now` as if the record were settled then, and every write
//! first [`settle`](Presence::settle)s the record, carrying out those changes in the order they
//! happened and announcing them, so the stored record never disagrees with what reads showed.

mod presence;
mod rooms;
#[cfg(test)]
mod tests;

pub use presence::{Presence, Rules};
pub use rooms::{RoomChange, RoomEvent, RoomsSeen, Typing, SCOPE_HOLDER};

use std::collections::BTreeMap;

/// An instant: milliseconds since the Unix epoch.
pub type Millis = i64;

/// A length of time in milliseconds (a TTL, a period), a type apart from the instants it is added
/// to, so that one cannot be passed where the other is expected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub i64);

impl Span {
    pub const ZERO: Span = Span(0);

    /// The instant this long after `at` (saturating).
    pub fn after(self, at: Millis) -> Millis {
        at.saturating_add(self.0)
    }

    /// The instant this long before `at` (saturating).
    pub fn before(self, at: Millis) -> Millis {
        at.saturating_sub(self.0)
    }

    /// Whether it is a length at all (0 or less turns a period off).
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

/// One connected device of a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    pub connected_at: Millis,
    pub last_heartbeat: Millis,
    /// The TTL the device was registered or last refreshed with.
    pub ttl: Span,
    /// Application metadata: the text of a JSON object.
    pub meta: Option<String>,
    /// The conversation or screen the device has open (PRESENCE.CONTEXT).
    pub context: Option<Vec<u8>>,
    /// Orders devices that connected in the same millisecond: one more than the largest of the
    /// user's other devices when it connected.
    pub order: u64,
    /// The rooms the device is in, each with the device's member data there (a JSON object).
    pub rooms: BTreeMap<Vec<u8>, Option<String>>,
    /// The room the device is typing in, until when.
    pub typing: Option<Typing>,
}

impl Device {
    /// The moment the device stops counting as connected.
    pub fn deadline(&self) -> Millis {
        self.ttl.after(self.last_heartbeat)
    }

    pub fn is_live(&self, now: Millis) -> bool {
        now < self.deadline()
    }
}

/// A status set by hand with PRESENCE.STATUS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manual {
    /// Online, Away, Busy, Dnd or Invisible.
    pub status: Status,
    pub message: Option<String>,
    /// When it returns to automatic on its own.
    pub until: Option<Millis>,
}

/// Who may see something about a user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Audience {
    #[default]
    Everyone,
    Contacts,
    Nobody,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Everyone => "everyone",
            Audience::Contacts => "contacts",
            Audience::Nobody => "nobody",
        }
    }

    pub fn parse(name: &[u8]) -> Option<Audience> {
        [Audience::Everyone, Audience::Contacts, Audience::Nobody]
            .into_iter()
            .find(|a| a.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    pub fn admits(self, is_contact: bool) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::Contacts => is_contact,
            Audience::Nobody => false,
        }
    }
}

/// A user's privacy rules: who may see them online, and who may see when they were last seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Privacy {
    pub online: Audience,
    pub last_seen: Audience,
}

impl Privacy {
    /// Whether what a viewer sees depends on being among the user's contacts (else the contacts
    /// need not be read).
    pub fn depends_on_contacts(self) -> bool {
        [self.online, self.last_seen].contains(&Audience::Contacts)
    }
}

/// The departure of a user's last device, waiting for its grace period to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaving {
    /// When the last device left.
    pub at: Millis,
    /// How it left: `Disconnect` or `Timeout`.
    pub reason: Reason,
    pub device: Vec<u8>,
}

/// Everything stored about one user (how it changes is [`Presence`]'s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Registered devices by id. Some may be past their deadline until the record is settled.
    pub devices: BTreeMap<Vec<u8>, Device>,
    /// The latest moment the user was known present through a device that has since left. While
    /// devices are connected, their heartbeats count too (see [`Record::last_seen`]).
    pub last_seen: Option<Millis>,
    /// The status as last settled, and when it began.
    pub status: Status,
    pub since: Option<Millis>,
    /// The status set by hand, if any; kept while the user is offline.
    pub manual: Option<Manual>,
    /// The latest activity (connecting, PRESENCE.ACTIVITY, HEARTBEAT ACTIVE).
    pub last_active: Option<Millis>,
    /// The last device left and the user goes offline when `grace` has passed, unless a device
    /// connects first.
    pub leaving: Option<Leaving>,
    /// The number of the latest event announced for this user.
    pub seq: u64,
    /// The scopes (zone, org) the user is listed in while online, sorted and distinct: rooms the
    /// user is in with every device.
    pub scopes: Vec<Vec<u8>>,
    /// The device that left last (with `last_seen`: "last seen on phone").
    pub last_device: Option<Vec<u8>>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            devices: BTreeMap::new(),
            last_seen: None,
            status: Status::Offline,
            since: None,
            manual: None,
            last_active: None,
            leaving: None,
            seq: 0,
            scopes: Vec::new(),
            last_device: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Online,
    Away,
    Busy,
    Dnd,
    Invisible,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Busy => "busy",
            Status::Dnd => "dnd",
            Status::Invisible => "invisible",
            Status::Offline => "offline",
        }
    }

    pub fn parse(name: &[u8]) -> Option<Status> {
        [
            Status::Online,
            Status::Away,
            Status::Busy,
            Status::Dnd,
            Status::Invisible,
            Status::Offline,
        ]
        .into_iter()
        .find(|s| s.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// What everyone else sees: an invisible user looks offline.
    pub fn public(self) -> Status {
        match self {
            Status::Invisible => Status::Offline,
            other => other,
        }
    }
}

/// What reads report about a user at a given moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub status: Status,
    pub devices: usize,
    pub last_seen: Option<Millis>,
    pub since: Option<Millis>,
    pub message: Option<String>,
    pub manual: bool,
    pub last_active: Option<Millis>,
    /// The scopes the user is in (none while offline).
    pub scopes: Vec<Vec<u8>>,
    /// The device that left last, shown with `last_seen`.
    pub last_device: Option<Vec<u8>>,
}

/// The longest META an event carries: a connect event includes the device's META when it is at
/// most this long (META itself may be up to 4096 bytes).
pub const EVENT_META_MAX: usize = 1024;

/// Why an event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Connect,
    Disconnect,
    Timeout,
    Manual,
    Idle,
    Active,
    Expired,
    /// Room events only: a device joined or left a room, changed its member data there, started
    /// or stopped typing by command.
    Join,
    Leave,
    Data,
    Typing,
    Stopped,
}

impl Reason {
    pub fn parse(name: &str) -> Option<Reason> {
        [
            Reason::Connect,
            Reason::Disconnect,
            Reason::Timeout,
            Reason::Manual,
            Reason::Idle,
            Reason::Active,
            Reason::Expired,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Disconnect => "disconnect",
            Reason::Timeout => "timeout",
            Reason::Manual => "manual",
            Reason::Idle => "idle",
            Reason::Active => "active",
            Reason::Expired => "expired",
            Reason::Join => "join",
            Reason::Leave => "leave",
            Reason::Data => "data",
            Reason::Typing => "typing",
            Reason::Stopped => "stopped",
        }
    }
}

/// A change announced to subscribers: of the user's status as everyone else sees it, or (when
/// device events are on) of the devices of a user who stays visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub status: Status,
    pub prev: Status,
    pub reason: Reason,
    /// The device that caused it (empty for a change that no device caused).
    pub device: Vec<u8>,
    /// Connected devices afterwards.
    pub devices: usize,
    pub last_seen: Option<Millis>,
    /// The custom message of the manual status afterwards, as everyone else sees it.
    pub message: Option<String>,
    /// The user's scopes: afterwards, or those they had when the change took them offline.
    pub scopes: Vec<Vec<u8>>,
    /// On a connect, the device's META when it is at most [`EVENT_META_MAX`] bytes.
    pub meta: Option<String>,
    /// When it happened: the command's time, or for a change that came with time the moment it
    /// came (a device's deadline, the end of a manual status, the start of idleness).
    pub ts: Millis,
    /// Per user, strictly increasing: see [`next_seq`].
    pub seq: u64,
}

impl Event {
    /// The event as a viewer sees it under the user's privacy rules (`is_contact`: the viewer is
    /// among the user's contacts), or `None` when it changes nothing they see. Someone who may
    /// see the user online sees it all but a hidden `last_seen`; anyone else always sees the
    /// user offline, so only a departure (which moves `last_seen`) shows, and only where the
    /// last-seen rule admits them.
    pub fn as_seen_by(&self, privacy: Privacy, is_contact: bool) -> Option<Event> {
        let shows_last_seen = privacy.last_seen.admits(is_contact);
        if privacy.online.admits(is_contact) {
            let mut seen = self.clone();
            if !shows_last_seen {
                seen.last_seen = None;
            }
            return Some(seen);
        }
        if self.status != Status::Offline || self.prev == Status::Offline || !shows_last_seen {
            return None;
        }
        Some(Event {
            status: Status::Offline,
            prev: Status::Offline,
            reason: self.reason,
            device: Vec::new(),
            devices: 0,
            last_seen: self.last_seen,
            message: None,
            scopes: Vec::new(),
            meta: None,
            ts: self.ts,
            seq: self.seq,
        })
    }
}

/// The largest `seq` taken from a record: above it (2^53, where JSON numbers stop being exact
/// in JavaScript) a stored value is not one the module wrote, and the user starts afresh.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// The `seq` of a user's next event at `at`, after `prev` (0: no event is on record). A user's
/// first event takes the event time in microseconds (ms × 1000), then each one is one more: so a
/// user whose record was lost (evicted, deleted, expired) starts again above every number a
/// consumer may remember, unless more than 1000 events per millisecond were announced for them.
pub fn next_seq(prev: u64, at: Millis) -> u64 {
    if prev == 0 || prev >= MAX_SEQ {
        u64::try_from(at)
            .unwrap_or(0)
            .saturating_mul(1000)
            .clamp(1, MAX_SEQ)
    } else {
        prev + 1
    }
}

/// Refusals of a write, reported to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The user already has this many connected devices.
    TooManyDevices(usize),
    /// The device named is not connected.
    NotConnected,
    /// The device is already in this many rooms.
    TooManyRooms(usize),
    /// Neither the device nor the user (by a scope) is in the room.
    NotInRoom,
}

impl Record {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.last_seen.is_none()
            && self.since.is_none()
            && self.seq == 0
            && self.manual.is_none()
            && self.last_active.is_none()
            && self.leaving.is_none()
    }

    /// Devices connected at `now`, in id order.
    pub fn live_devices(&self, now: Millis) -> impl Iterator<Item = (&Vec<u8>, &Device)> {
        self.devices.iter().filter(move |(_, d)| d.is_live(now))
    }

    pub fn live_count(&self, now: Millis) -> usize {
        self.live_devices(now).count()
    }

    /// The latest moment the user was seen: the stored departure time, or while connected any
    /// device's heartbeat or the latest activity (which proves presence as well).
    fn last_seen(&self) -> Option<Millis> {
        let connected = !self.devices.is_empty();
        self.devices
            .values()
            .map(|d| d.last_heartbeat)
            .chain(self.last_seen)
            .chain(self.last_active.filter(|_| connected))
            .max()
    }

    fn view_settled(&self) -> View {
        View {
            status: self.status,
            devices: self.devices.len(),
            last_seen: self.last_seen(),
            since: self.since,
            message: self.manual.as_ref().and_then(|m| m.message.clone()),
            manual: self.manual.is_some(),
            last_active: self.last_active,
            scopes: self.scopes.clone(),
            last_device: self.last_device.clone(),
        }
    }

    /// Records which conversation (or screen) a connected device has open (`None`: none).
    /// Expects a settled record. Returns false, changing nothing, when the device is not connected.
    pub fn set_context(&mut self, device: &[u8], context: Option<Vec<u8>>) -> bool {
        match self.devices.get_mut(device) {
            Some(d) => {
                d.context = context;
                true
            }
            None => false,
        }
    }

    /// Whether any device connected at `now` has `context` open.
    pub fn in_context(&self, context: &[u8], now: Millis) -> bool {
        self.live_devices(now)
            .any(|(_, d)| d.context.as_deref() == Some(context))
    }

    /// Places the user in `scopes` (replacing the ones they had) until they go offline.
    /// Returns whether they changed.
    pub(super) fn set_scopes(&mut self, mut scopes: Vec<Vec<u8>>) -> bool {
        scopes.sort_unstable();
        scopes.dedup();
        let changed = scopes != self.scopes;
        self.scopes = scopes;
        changed
    }

    /// The score of the user in the online listings (everyone, and each of their scopes): their
    /// last activity, while the status as last settled shows them to others (connected, or
    /// within a grace period, and not invisible). `None`: not listed.
    pub fn listed(&self) -> Option<Millis> {
        if self.status.public() == Status::Offline {
            return None;
        }
        Some(self.last_active.or(self.since).unwrap_or(0))
    }

    /// When the whole record may disappear: `retention` after the user went offline (or, for a
    /// record that only holds settings, after `now`). `None` while devices are connected, and
    /// always with a `retention` of 0 (kept forever).
    pub fn expires_at(&self, retention: Span, now: Millis) -> Option<Millis> {
        if !self.devices.is_empty() || retention == Span::ZERO {
            return None;
        }
        let base = self.last_seen.or(self.since).unwrap_or(now);
        Some(retention.after(base))
    }
}
