//! The presence model: what a user's record holds and how commands and time change it.
//!
//! Pure logic with no Redis types, so every rule is unit-tested without a server. Time is passed in
//! (milliseconds since the epoch); nothing here reads a clock.
//!
//! The rule that keeps reads exact without a timer: everything that changes with time (a device's
//! deadline, the end of a manual status, the moment a user goes idle) is decided from stored
//! instants. Reads compute the view at `now` as if the record were settled then, and every write
//! first [`settle`](Record::settle)s the record, carrying out those changes in the order they
//! happened and announcing them, so the stored record never disagrees with what reads showed.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch, or a duration in milliseconds.
pub type Millis = i64;

/// One connected device of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub connected_at: Millis,
    pub last_heartbeat: Millis,
    /// The TTL the device was registered or last refreshed with.
    pub ttl: Millis,
    /// Application metadata: the text of a JSON object.
    pub meta: Option<String>,
    /// The conversation or screen the device has open (PRESENCE.CONTEXT).
    pub context: Option<Vec<u8>>,
}

impl Device {
    /// The moment the device stops counting as connected.
    pub fn deadline(&self) -> Millis {
        self.last_heartbeat.saturating_add(self.ttl)
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

    fn admits(self, is_contact: bool) -> bool {
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

/// The departure of a user's last device, waiting for its grace period to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaving {
    /// When the last device left.
    pub at: Millis,
    /// How it left: `Disconnect` or `Timeout`.
    pub reason: Reason,
    pub device: Vec<u8>,
}

/// Everything stored about one user.
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
    /// The scopes (zone, org, room) the user is listed in while online, sorted and distinct.
    pub scopes: Vec<Vec<u8>>,
    /// Policy set by the caller, not stored: whether changes of a user who stays online (a device
    /// joins or leaves) are announced too, and after how long without activity a connected user
    /// is away (0: never).
    pub device_events: bool,
    pub away_after: Millis,
    /// How long the offline transition waits after the last device left (flap suppression).
    pub grace: Millis,
    /// Events announced by the transitions since the record was loaded, oldest first. Not stored.
    pub events: Vec<Event>,
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
            device_events: false,
            away_after: 0,
            grace: 0,
            events: Vec::new(),
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
}

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
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Disconnect => "disconnect",
            Reason::Timeout => "timeout",
            Reason::Manual => "manual",
            Reason::Idle => "idle",
            Reason::Active => "active",
            Reason::Expired => "expired",
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
    /// When it happened: the command's time, or for a change that came with time the moment it
    /// came (a device's deadline, the end of a manual status, the start of idleness).
    pub ts: Millis,
    /// Per user, strictly increasing: see [`next_seq`].
    pub seq: u64,
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
}

/// A change that comes with time, found by [`Record::settle`].
enum Due {
    Device(Vec<u8>),
    ManualEnds,
    Idle,
    GraceEnds,
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

    /// The latest moment the user was seen: the stored departure time or any device's heartbeat.
    fn last_seen(&self) -> Option<Millis> {
        self.devices
            .values()
            .map(|d| d.last_heartbeat)
            .chain(self.last_seen)
            .max()
    }

    /// The moment an active, connected user with no manual status goes idle.
    fn idle_at(&self) -> Option<Millis> {
        if self.away_after <= 0 || self.manual.is_some() || self.devices.is_empty() {
            return None;
        }
        self.last_active
            .map(|active| active.saturating_add(self.away_after))
    }

    /// The status of a settled record at `now`: offline without a device, else the manual status,
    /// else away once idle, else online.
    fn status_at(&self, now: Millis) -> Status {
        if self.devices.is_empty() {
            // Within the grace period the user keeps the status they had.
            match self.grace_ends() {
                Some(end) if now < end => self.status,
                _ => Status::Offline,
            }
        } else if let Some(manual) = &self.manual {
            manual.status
        } else if self.idle_at().is_some_and(|idle| idle <= now) {
            Status::Away
        } else {
            Status::Online
        }
    }

    /// When the grace period of the last device's departure ends.
    fn grace_ends(&self) -> Option<Millis> {
        self.leaving
            .as_ref()
            .map(|l| l.at.saturating_add(self.grace))
    }

    /// The next moment something changes with time: a device's deadline, going idle, or the
    /// user's own timer.
    pub fn next_change(&self) -> Option<Millis> {
        self.devices
            .values()
            .map(Device::deadline)
            .chain(self.user_timer())
            .chain(self.goes_idle_at())
            .min()
    }

    /// When a connected user not away yet becomes away for lack of activity.
    pub fn goes_idle_at(&self) -> Option<Millis> {
        self.idle_at().filter(|_| self.status != Status::Away)
    }

    /// The moment the user's own timer fires: the end of the manual status, or the end of a grace
    /// period. (Device deadlines have entries of their own in the due index, and going idle is
    /// found through the listing of everyone, whose scores are the users' last activity.)
    pub fn user_timer(&self) -> Option<Millis> {
        self.manual
            .as_ref()
            .and_then(|m| m.until)
            .into_iter()
            .chain(self.grace_ends())
            .min()
    }

    /// The user as reads report them at `now`: as if settled then, without changing anything.
    pub fn view(&self, now: Millis) -> View {
        self.settled_at(now).view_settled()
    }

    /// The record as settled at `now`, copied only when time changed something.
    fn settled_at(&self, now: Millis) -> Cow<'_, Record> {
        if self.next_change().is_some_and(|at| at <= now) {
            let mut settled = self.clone();
            settled.events.clear();
            settled.settle(now);
            Cow::Owned(settled)
        } else {
            Cow::Borrowed(self)
        }
    }

    /// The user as another user sees them at `now`, under the user's privacy rules (`is_contact`:
    /// the viewer is among the user's contacts). Someone who may not see the user online, or who
    /// looks at an invisible user, sees them offline with no device, no status detail, and the
    /// `last_seen` of their latest departure (nothing of the current session), or nil where the
    /// last-seen rule hides it.
    pub fn view_for(&self, now: Millis, privacy: Privacy, is_contact: bool) -> View {
        let record = self.settled_at(now);
        let mut view = record.view_settled();
        let shows_last_seen = privacy.last_seen.admits(is_contact);
        if privacy.online.admits(is_contact) && view.status != Status::Invisible {
            if !shows_last_seen {
                view.last_seen = None;
            }
            return view;
        }
        View {
            status: Status::Offline,
            devices: 0,
            last_seen: record.last_seen.filter(|_| shows_last_seen),
            since: None,
            message: None,
            manual: false,
            last_active: None,
        }
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
        }
    }

    /// Carries out, in the order they came, the changes that time brought by `now`: devices past
    /// their deadline leave (announced as timeouts; when the last goes the user is offline since
    /// their latest heartbeat), a manual status that ran out ends, a connected user without
    /// activity for `away_after` becomes away. Returns how many devices were removed.
    pub fn settle(&mut self, now: Millis) -> usize {
        self.settle_at_most(now, usize::MAX)
    }

    /// As [`settle`](Record::settle), but stops before removing more than `max_devices` devices
    /// (a sweep's budget): what comes after stays for the next settling.
    pub fn settle_at_most(&mut self, now: Millis, max_devices: usize) -> usize {
        let mut removed = 0;
        loop {
            let mut next: Option<(Millis, Due)> = None;
            let mut consider = |at: Millis, due: Due| {
                if at <= now && next.as_ref().is_none_or(|(t, _)| at < *t) {
                    next = Some((at, due));
                }
            };
            for (id, d) in &self.devices {
                consider(d.deadline(), Due::Device(id.clone()));
            }
            if let Some(until) = self.manual.as_ref().and_then(|m| m.until) {
                consider(until, Due::ManualEnds);
            }
            if self.status != Status::Away {
                if let Some(idle) = self.idle_at() {
                    consider(idle, Due::Idle);
                }
            }
            if let Some(end) = self.grace_ends() {
                consider(end, Due::GraceEnds);
            }
            let Some((at, due)) = next else {
                return removed;
            };
            match due {
                Due::Device(_) if removed >= max_devices => return removed,
                Due::Device(id) => {
                    if let Some(device) = self.devices.remove(&id) {
                        self.last_seen =
                            Some(self.last_seen.map_or(device.last_heartbeat, |seen| {
                                seen.max(device.last_heartbeat)
                            }));
                        removed += 1;
                        self.left(Reason::Timeout, &id, at);
                        // Offline by timeout: since the last heartbeat, as last_seen says.
                        let since = self.last_seen.unwrap_or(at);
                        self.changed(Reason::Timeout, &id, at, since);
                    }
                }
                Due::ManualEnds => {
                    self.manual = None;
                    self.changed(Reason::Expired, b"", at, at);
                }
                Due::Idle => self.changed(Reason::Idle, b"", at, at),
                Due::GraceEnds => {
                    if let Some(leaving) = self.leaving.take() {
                        let since = self.last_seen.unwrap_or(leaving.at);
                        self.changed(leaving.reason, &leaving.device, at, since);
                    }
                }
            }
        }
    }

    /// Registers `device`, or refreshes it when it is connected (keeping its `connected_at`, and
    /// its META unless a new one is given). Connecting is activity. Expects a settled record.
    /// Returns the number of connected devices afterwards.
    pub fn connect(
        &mut self,
        device: &[u8],
        ttl: Millis,
        meta: Option<String>,
        now: Millis,
        max_devices: usize,
    ) -> Result<usize, Refusal> {
        if let Some(existing) = self.devices.get_mut(device) {
            existing.last_heartbeat = now;
            existing.ttl = ttl;
            if meta.is_some() {
                existing.meta = meta;
            }
            self.last_active = Some(now);
            self.changed(Reason::Active, device, now, now);
            return Ok(self.devices.len());
        }
        if self.devices.len() >= max_devices {
            return Err(Refusal::TooManyDevices(self.devices.len()));
        }
        // Back within the grace period: the departure never happened for anyone else.
        self.leaving = None;
        self.devices.insert(
            device.to_vec(),
            Device {
                connected_at: now,
                last_heartbeat: now,
                ttl,
                meta,
                context: None,
            },
        );
        self.last_active = Some(now);
        self.changed(Reason::Connect, device, now, now);
        Ok(self.devices.len())
    }

    /// Pushes a connected device's deadline to `now + ttl` (its own TTL when none is given), or
    /// registers it with `ttl` or `default_ttl` when it is not connected. A heartbeat is not
    /// activity (registering is). Expects a settled record. Returns whether the device was
    /// already connected.
    pub fn heartbeat(
        &mut self,
        device: &[u8],
        ttl: Option<Millis>,
        default_ttl: Millis,
        now: Millis,
        max_devices: usize,
    ) -> Result<bool, Refusal> {
        if let Some(existing) = self.devices.get_mut(device) {
            existing.last_heartbeat = now;
            if let Some(ttl) = ttl {
                existing.ttl = ttl;
            }
            return Ok(true);
        }
        self.connect(device, ttl.unwrap_or(default_ttl), None, now, max_devices)?;
        Ok(false)
    }

    /// A device the due index knows at deadline `at` but the record does not (the record was
    /// deleted, evicted or edited): it is put back as it must have been, connected until `at`, so
    /// that settling announces its timeout like any other. Nothing changes when the record has it.
    pub fn lost(&mut self, device: &[u8], at: Millis) {
        if self.devices.contains_key(device) {
            return;
        }
        if self.devices.is_empty() && self.leaving.is_none() {
            // Whatever else it was, the user was there through this device.
            self.status = Status::Online;
        }
        let device_back = Device {
            connected_at: at,
            last_heartbeat: at,
            ttl: 0,
            meta: None,
            context: None,
        };
        self.devices.insert(device.to_vec(), device_back);
    }

    /// Removes a device that left cleanly. Expects a settled record. Returns the number of devices
    /// left, or `None` when the device was not connected (and nothing changed).
    pub fn disconnect(&mut self, device: &[u8], now: Millis) -> Option<usize> {
        self.devices.remove(device)?;
        self.last_seen = Some(self.last_seen.map_or(now, |seen| seen.max(now)));
        self.left(Reason::Disconnect, device, now);
        self.changed(Reason::Disconnect, device, now, now);
        Some(self.devices.len())
    }

    /// A device left at `at`: when it was the last and a grace period applies, the offline
    /// transition waits for it to end.
    fn left(&mut self, reason: Reason, device: &[u8], at: Millis) {
        if self.devices.is_empty() && self.grace > 0 && self.status != Status::Offline {
            self.leaving = Some(Leaving {
                at,
                reason,
                device: device.to_vec(),
            });
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
    pub fn set_scopes(&mut self, mut scopes: Vec<Vec<u8>>) {
        scopes.sort_unstable();
        scopes.dedup();
        self.scopes = scopes;
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

    /// Records activity (a message sent, typing, the app in the foreground). Expects a settled
    /// record.
    pub fn activity(&mut self, now: Millis) {
        self.last_active = Some(now);
        self.changed(Reason::Active, b"", now, now);
    }

    /// Sets a status by hand (`None`: back to automatic). Expects a settled record.
    pub fn set_manual(&mut self, manual: Option<Manual>, now: Millis) {
        let hides = manual
            .as_ref()
            .is_some_and(|m| m.status == Status::Invisible);
        if hides && self.status != Status::Invisible && !self.devices.is_empty() {
            // Others see them leave now: that is the last time they were seen.
            self.last_seen = Some(self.last_seen.map_or(now, |seen| seen.max(now)));
        }
        self.manual = manual;
        self.changed(Reason::Manual, b"", now, now);
    }

    /// After a change caused by `reason` at `at`: if the status moved, record it (since `since`)
    /// and announce it when everyone else can see the difference; if only the devices changed,
    /// announce that when device events are on and the user is visible.
    fn changed(&mut self, reason: Reason, device: &[u8], at: Millis, since: Millis) {
        let prev = self.status;
        let status = self.status_at(at);
        let devices = self.devices.len();
        let device_change = matches!(
            reason,
            Reason::Connect | Reason::Disconnect | Reason::Timeout
        );
        if status == Status::Offline {
            // Scopes hold only while online.
            self.scopes.clear();
        }
        if status != prev {
            self.status = status;
            self.since = Some(since);
            if status.public() == prev.public() {
                return; // invisible came or went while offline: nothing anyone can see
            }
        } else if !(device_change
            && self.device_events
            && status.public() != Status::Offline
            && (devices > 0 || self.leaving.is_none()))
        {
            return;
        }
        self.seq = next_seq(self.seq, at);
        let last_seen = if status.public() == Status::Offline {
            self.last_seen
        } else {
            self.last_seen()
        };
        self.events.push(Event {
            status: status.public(),
            prev: prev.public(),
            reason,
            device: device.to_vec(),
            devices,
            last_seen,
            ts: at,
            seq: self.seq,
        });
    }

    /// When the whole record may disappear: `retention` after the user went offline (or, for a
    /// record that only holds settings, after `now`). `None` while devices are connected.
    pub fn expires_at(&self, retention: Millis, now: Millis) -> Option<Millis> {
        if !self.devices.is_empty() {
            return None;
        }
        let base = self.last_seen.or(self.since).unwrap_or(now);
        Some(base.saturating_add(retention))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Millis = 1000;
    const MAX: usize = 32;

    fn online(record: &mut Record, device: &[u8], now: Millis) -> usize {
        record.settle(now);
        record.connect(device, TTL, None, now, MAX).unwrap()
    }

    #[test]
    fn a_new_user_is_offline_and_never_seen() {
        let view = Record::default().view(5);
        assert_eq!(
            view,
            View {
                status: Status::Offline,
                devices: 0,
                last_seen: None,
                since: None,
                message: None,
                manual: false,
                last_active: None,
            }
        );
    }

    #[test]
    fn connecting_makes_the_user_online_since_then() {
        let mut r = Record::default();
        assert_eq!(online(&mut r, b"phone", 100), 1);
        let view = r.view(150);
        assert_eq!(view.status, Status::Online);
        assert_eq!(view.devices, 1);
        assert_eq!(view.since, Some(100));
        assert_eq!(view.last_seen, Some(100));
    }

    #[test]
    fn a_second_device_keeps_since_and_counts() {
        let mut r = Record::default();
        online(&mut r, b"phone", 100);
        assert_eq!(online(&mut r, b"laptop", 200), 2);
        let view = r.view(250);
        assert_eq!(view.devices, 2);
        assert_eq!(view.since, Some(100));
        assert_eq!(view.last_seen, Some(200));
    }

    #[test]
    fn refreshing_keeps_connected_at_and_meta_unless_replaced() {
        let mut r = Record::default();
        r.connect(b"d", TTL, Some("{\"a\":1}".into()), 100, MAX)
            .unwrap();
        assert_eq!(r.connect(b"d", 5000, None, 300, MAX), Ok(1));
        let d = &r.devices[&b"d".to_vec()];
        assert_eq!((d.connected_at, d.last_heartbeat, d.ttl), (100, 300, 5000));
        assert_eq!(d.meta.as_deref(), Some("{\"a\":1}"));
        r.connect(b"d", TTL, Some("{}".into()), 400, MAX).unwrap();
        assert_eq!(r.devices[&b"d".to_vec()].meta.as_deref(), Some("{}"));
    }

    #[test]
    fn a_device_past_its_deadline_is_not_connected() {
        let mut r = Record::default();
        online(&mut r, b"phone", 100);
        assert_eq!(r.view(1099).status, Status::Online);
        let view = r.view(1100);
        assert_eq!(view.status, Status::Offline);
        assert_eq!(view.devices, 0);
        assert_eq!(view.last_seen, Some(100));
        assert_eq!(view.since, Some(100));
    }

    #[test]
    fn settling_removes_expired_devices_and_records_the_last_heartbeat() {
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        r.heartbeat(b"a", None, TTL, 400, MAX).unwrap();
        online(&mut r, b"b", 500);
        assert_eq!(r.settle(1450), 1);
        assert!(!r.devices.contains_key(b"a".as_slice()));
        assert_eq!(r.view(1450).status, Status::Online);
        assert_eq!(r.view(1450).since, Some(100));
        assert_eq!(r.settle(1500), 1);
        let view = r.view(1500);
        assert_eq!(view.status, Status::Offline);
        assert_eq!(view.last_seen, Some(500));
        assert_eq!(view.since, Some(500));
        assert_eq!(r.settle(5000), 0);
    }

    fn summary(r: &Record) -> Vec<(&'static str, &'static str, &'static str, String, usize, u64)> {
        r.events
            .iter()
            .map(|e| {
                (
                    e.status.as_str(),
                    e.prev.as_str(),
                    e.reason.as_str(),
                    String::from_utf8_lossy(&e.device).into_owned(),
                    e.devices,
                    e.seq,
                )
            })
            .collect()
    }

    #[test]
    fn status_changes_are_announced_with_growing_seq_from_the_first_events_time() {
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        online(&mut r, b"b", 200);
        r.heartbeat(b"a", None, TTL, 300, MAX).unwrap();
        r.disconnect(b"a", 400);
        r.disconnect(b"b", 500);
        online(&mut r, b"c", 600);
        r.settle(1600);
        assert_eq!(
            summary(&r),
            vec![
                ("online", "offline", "connect", "a".into(), 1, 100_000),
                ("offline", "online", "disconnect", "b".into(), 0, 100_001),
                ("online", "offline", "connect", "c".into(), 1, 100_002),
                ("offline", "online", "timeout", "c".into(), 0, 100_003),
            ]
        );
        let timeout = &r.events[3];
        assert_eq!((timeout.ts, timeout.last_seen), (1600, Some(600)));
        assert_eq!(r.events[1].last_seen, Some(500));
        assert_eq!(r.events[0].last_seen, Some(100));
    }

    #[test]
    fn seq_starts_from_the_time_and_restarts_only_from_nothing_or_garbage() {
        assert_eq!(next_seq(0, 1_700_000_000_123), 1_700_000_000_123_000);
        assert_eq!(next_seq(41, 1_700_000_000_123), 42);
        assert_eq!(next_seq(0, 0), 1);
        assert_eq!(next_seq(0, -5), 1);
        assert_eq!(next_seq(0, Millis::MAX), MAX_SEQ);
        assert_eq!(next_seq(MAX_SEQ, 7), 7000);
        // A record lost after many events still restarts above them.
        let lost_at = 1_700_000_000_123;
        let remembered = next_seq(0, lost_at - 1) + 999;
        assert!(next_seq(0, lost_at) > remembered);
    }

    #[test]
    fn a_device_only_the_index_knows_is_announced_as_timed_out() {
        let mut r = Record::default();
        r.lost(b"phone", 700);
        assert_eq!(r.settle(1000), 1);
        assert_eq!(
            summary(&r),
            vec![("offline", "online", "timeout", "phone".into(), 0, 700_000)]
        );
        assert_eq!((r.events[0].ts, r.last_seen), (700, Some(700)));
        // A device the record has is left alone.
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        r.lost(b"a", 50);
        assert_eq!(r.devices[b"a".as_slice()].deadline(), 100 + TTL);
    }

    #[test]
    fn settling_at_most_n_devices_stops_in_time_order() {
        let mut r = Record {
            device_events: true,
            ..Record::default()
        };
        for (id, ttl) in [(&b"a"[..], 100), (b"b", 200), (b"c", 300)] {
            r.connect(id, ttl, None, 0, MAX).unwrap();
        }
        r.events.clear();
        assert_eq!(r.settle_at_most(1000, 2), 2);
        assert_eq!(r.devices.keys().collect::<Vec<_>>(), [&b"c".to_vec()]);
        assert_eq!(r.settle_at_most(1000, 2), 1);
        assert!(r.devices.is_empty());
        let ts: Vec<Millis> = r.events.iter().map(|e| e.ts).collect();
        assert_eq!(ts, [100, 200, 300]);
    }

    #[test]
    fn device_events_announce_changes_of_a_user_who_stays_online() {
        let mut r = Record {
            device_events: true,
            ..Record::default()
        };
        online(&mut r, b"a", 100);
        r.connect(b"b", 5000, None, 200, MAX).unwrap();
        r.connect(b"a", TTL, None, 300, MAX).unwrap(); // a refresh is not a change
        r.settle(1300);
        r.disconnect(b"b", 1400);
        assert_eq!(
            summary(&r),
            vec![
                ("online", "offline", "connect", "a".into(), 1, 100_000),
                ("online", "online", "connect", "b".into(), 2, 100_001),
                ("online", "online", "timeout", "a".into(), 1, 100_002),
                ("offline", "online", "disconnect", "b".into(), 0, 100_003),
            ]
        );
    }

    #[test]
    fn several_timeouts_are_announced_in_deadline_order() {
        let mut r = Record {
            device_events: true,
            ..Record::default()
        };
        r.connect(b"late", 3000, None, 100, MAX).unwrap();
        r.connect(b"early", 1000, None, 100, MAX).unwrap();
        r.events.clear();
        assert_eq!(r.settle(10_000), 2);
        assert_eq!(
            summary(&r),
            vec![
                ("online", "online", "timeout", "early".into(), 1, 100_002),
                ("offline", "online", "timeout", "late".into(), 0, 100_003),
            ]
        );
        assert_eq!((r.events[0].ts, r.events[1].ts), (1100, 3100));
    }

    #[test]
    fn refusals_and_unknown_devices_announce_nothing() {
        let mut r = Record::default();
        r.connect(b"a", TTL, None, 100, 1).unwrap();
        r.events.clear();
        assert!(r.connect(b"b", TTL, None, 100, 1).is_err());
        assert_eq!(r.disconnect(b"x", 200), None);
        assert!(r.events.is_empty());
        assert_eq!(r.seq, 100_000);
    }

    #[test]
    fn settling_is_invisible_to_reads() {
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        online(&mut r, b"b", 300);
        for now in [200, 1100, 1250, 1300, 5000] {
            let before = r.view(now);
            let mut settled = r.clone();
            settled.settle(now);
            assert_eq!(settled.view(now), before, "at {now}");
        }
    }

    #[test]
    fn heartbeat_of_a_connected_device_keeps_its_ttl() {
        let mut r = Record::default();
        r.connect(b"d", 5000, None, 100, MAX).unwrap();
        assert_eq!(r.heartbeat(b"d", None, TTL, 200, MAX), Ok(true));
        assert_eq!(r.devices[&b"d".to_vec()].deadline(), 5200);
        assert_eq!(r.heartbeat(b"d", Some(300), TTL, 250, MAX), Ok(true));
        assert_eq!(r.devices[&b"d".to_vec()].deadline(), 550);
    }

    #[test]
    fn heartbeat_of_an_unknown_device_registers_it() {
        let mut r = Record::default();
        assert_eq!(r.heartbeat(b"d", None, TTL, 100, MAX), Ok(false));
        assert_eq!(r.view(150).status, Status::Online);
        assert_eq!(r.devices[&b"d".to_vec()].ttl, TTL);
        assert_eq!(r.heartbeat(b"e", Some(700), TTL, 100, MAX), Ok(false));
        assert_eq!(r.devices[&b"e".to_vec()].ttl, 700);
    }

    #[test]
    fn max_devices_refuses_new_devices_but_not_heartbeats() {
        let mut r = Record::default();
        r.connect(b"a", TTL, None, 100, 2).unwrap();
        r.connect(b"b", TTL, None, 100, 2).unwrap();
        assert_eq!(
            r.connect(b"c", TTL, None, 100, 2),
            Err(Refusal::TooManyDevices(2))
        );
        assert_eq!(
            r.heartbeat(b"c", None, TTL, 100, 2),
            Err(Refusal::TooManyDevices(2))
        );
        assert_eq!(r.heartbeat(b"a", None, TTL, 150, 2), Ok(true));
        assert_eq!(r.connect(b"b", TTL, None, 150, 2), Ok(2));
        assert_eq!(r.devices.len(), 2);
    }

    #[test]
    fn expired_devices_do_not_count_toward_max_devices() {
        let mut r = Record::default();
        r.connect(b"a", 100, None, 0, 1).unwrap();
        r.settle(100);
        assert_eq!(r.connect(b"b", TTL, None, 100, 1), Ok(1));
    }

    #[test]
    fn disconnect_of_the_last_device_makes_the_user_offline_now() {
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        online(&mut r, b"b", 200);
        assert_eq!(r.disconnect(b"a", 300), Some(1));
        assert_eq!(r.view(300).status, Status::Online);
        assert_eq!(r.view(300).since, Some(100));
        assert_eq!(r.disconnect(b"b", 400), Some(0));
        let view = r.view(400);
        assert_eq!(view.status, Status::Offline);
        assert_eq!(view.last_seen, Some(400));
        assert_eq!(view.since, Some(400));
    }

    #[test]
    fn disconnect_of_an_unknown_device_changes_nothing() {
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        let before = r.clone();
        assert_eq!(r.disconnect(b"x", 300), None);
        assert_eq!(r, before);
    }

    #[test]
    fn coming_back_after_offline_starts_a_new_since() {
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        r.disconnect(b"a", 200);
        online(&mut r, b"a", 900);
        assert_eq!(r.view(900).since, Some(900));
        assert_eq!(r.devices[&b"a".to_vec()].connected_at, 900);
    }

    #[test]
    fn reconnecting_after_a_timeout_is_a_new_session() {
        let mut r = Record::default();
        online(&mut r, b"a", 100);
        assert_eq!(online(&mut r, b"a", 2000), 1);
        assert_eq!(r.devices[&b"a".to_vec()].connected_at, 2000);
        assert_eq!(r.view(2000).since, Some(2000));
    }

    #[test]
    fn the_record_expires_only_while_offline() {
        let mut r = Record::default();
        assert_eq!(r.expires_at(10, 5), Some(15), "a record of settings alone");
        r.connect(b"a", 1000, None, 100, MAX).unwrap();
        r.connect(b"b", 5000, None, 200, MAX).unwrap();
        assert_eq!(r.expires_at(10, 250), None);
        r.disconnect(b"a", 300);
        r.disconnect(b"b", 400);
        assert_eq!(r.expires_at(10, 450), Some(410));
    }

    #[test]
    fn huge_ttls_and_times_do_not_overflow() {
        let d = Device {
            connected_at: 0,
            last_heartbeat: Millis::MAX - 1,
            ttl: Millis::MAX,
            meta: None,
            context: None,
        };
        assert_eq!(d.deadline(), Millis::MAX);
        let mut r = Record::default();
        r.devices.insert(b"d".to_vec(), d);
        r.settle(Millis::MAX);
        assert_eq!(r.expires_at(Millis::MAX, 0), Some(Millis::MAX));
    }

    fn events(r: &mut Record) -> Vec<(&'static str, &'static str, &'static str, Millis)> {
        let out = r
            .events
            .iter()
            .map(|e| (e.status.as_str(), e.prev.as_str(), e.reason.as_str(), e.ts))
            .collect();
        r.events.clear();
        out
    }

    fn away_after(ms: Millis) -> Record {
        Record {
            away_after: ms,
            ..Record::default()
        }
    }

    #[test]
    fn a_connected_user_without_activity_goes_away_and_comes_back_with_activity() {
        let mut r = away_after(1000);
        r.connect(b"d", 60_000, None, 0, MAX).unwrap();
        // Heartbeats keep the connection but are not activity.
        r.heartbeat(b"d", None, 60_000, 500, MAX).unwrap();
        assert_eq!(r.view(999).status, Status::Online);
        assert_eq!(r.view(1000).status, Status::Away);
        assert_eq!(r.view(1000).since, Some(1000));
        r.settle(1500);
        assert_eq!(
            events(&mut r),
            vec![
                ("online", "offline", "connect", 0),
                ("away", "online", "idle", 1000)
            ]
        );
        r.activity(2000);
        assert_eq!(events(&mut r), vec![("online", "away", "active", 2000)]);
        assert_eq!(r.view(2999).status, Status::Online);
        assert_eq!(r.view(3000).status, Status::Away);
        assert_eq!(r.goes_idle_at(), Some(3000));
        assert_eq!(r.next_change(), Some(3000));
        assert_eq!(r.user_timer(), None, "going idle needs no timer of its own");
    }

    #[test]
    fn connecting_again_is_activity() {
        let mut r = away_after(1000);
        r.connect(b"d", 60_000, None, 0, MAX).unwrap();
        r.settle(1200);
        r.connect(b"d", 60_000, None, 1200, MAX).unwrap();
        assert_eq!(events(&mut r)[2], ("online", "away", "active", 1200));
    }

    #[test]
    fn a_manual_status_wins_over_auto_away_and_ends_on_its_own() {
        let mut r = away_after(1000);
        r.connect(b"d", 60_000, None, 0, MAX).unwrap();
        let busy = Manual {
            status: Status::Busy,
            message: Some("In a meeting".into()),
            until: Some(5000),
        };
        r.set_manual(Some(busy), 100);
        assert_eq!(r.user_timer(), Some(5000));
        let view = r.view(4000);
        assert_eq!((view.status, view.manual), (Status::Busy, true));
        assert_eq!(view.message.as_deref(), Some("In a meeting"));
        r.settle(6000);
        assert_eq!(
            events(&mut r),
            vec![
                ("online", "offline", "connect", 0),
                ("busy", "online", "manual", 100),
                // Idle long before the manual status ended: away at once, no longer busy.
                ("away", "busy", "expired", 5000),
            ]
        );
        assert!(r.manual.is_none());
    }

    #[test]
    fn a_manual_status_is_kept_while_offline_and_applies_on_return() {
        let mut r = Record::default();
        let dnd = Manual {
            status: Status::Dnd,
            message: None,
            until: None,
        };
        r.set_manual(Some(dnd), 0);
        assert!(
            events(&mut r).is_empty(),
            "offline either way: nothing to announce"
        );
        assert_eq!(r.view(10).status, Status::Offline);
        assert!(r.view(10).manual);
        r.connect(b"d", 1000, None, 100, MAX).unwrap();
        assert_eq!(events(&mut r), vec![("dnd", "offline", "connect", 100)]);
        r.set_manual(None, 200);
        assert_eq!(events(&mut r), vec![("online", "dnd", "manual", 200)]);
    }

    #[test]
    fn invisible_looks_offline_to_everyone_else() {
        let mut r = Record {
            device_events: true,
            ..Record::default()
        };
        r.connect(b"a", 60_000, None, 0, MAX).unwrap();
        let invisible = Manual {
            status: Status::Invisible,
            message: None,
            until: None,
        };
        r.set_manual(Some(invisible), 100);
        r.connect(b"b", 60_000, None, 200, MAX).unwrap();
        r.disconnect(b"b", 300);
        assert_eq!(
            events(&mut r),
            vec![
                ("online", "offline", "connect", 0),
                ("offline", "online", "manual", 100)
            ],
            "going invisible is an ordinary offline event; devices come and go unseen"
        );
        // The trusted view shows the truth.
        assert_eq!(r.view(400).status, Status::Invisible);
        r.disconnect(b"a", 500);
        assert!(
            events(&mut r).is_empty(),
            "leaving while invisible changes nothing visible"
        );
        r.connect(b"a", 60_000, None, 600, MAX).unwrap();
        r.set_manual(None, 700);
        assert_eq!(events(&mut r), vec![("online", "offline", "manual", 700)]);
    }

    #[test]
    fn changes_that_came_with_time_are_announced_in_the_order_they_came() {
        let mut r = away_after(1000);
        r.connect(b"d", 3000, None, 0, MAX).unwrap();
        r.settle(10_000);
        assert_eq!(
            events(&mut r),
            vec![
                ("online", "offline", "connect", 0),
                ("away", "online", "idle", 1000),
                ("offline", "away", "timeout", 3000),
            ]
        );
        assert_eq!(
            r.view(10_000).since,
            Some(0),
            "offline since the last heartbeat"
        );
        assert_eq!(r.user_timer(), None);
    }

    #[test]
    fn reads_agree_with_settling_at_every_moment() {
        let mut r = away_after(1000);
        r.connect(b"a", 2500, None, 0, MAX).unwrap();
        r.set_manual(
            Some(Manual {
                status: Status::Away,
                message: None,
                until: Some(1500),
            }),
            10,
        );
        for now in [0, 999, 1000, 1499, 1500, 2000, 2499, 2500, 9000] {
            let mut settled = r.clone();
            settled.settle(now);
            assert_eq!(settled.view(now), r.view(now), "at {now}");
        }
    }

    #[test]
    fn a_context_belongs_to_a_connected_device_and_leaves_with_it() {
        let mut r = Record::default();
        r.connect(b"phone", 1000, None, 0, MAX).unwrap();
        r.connect(b"web", 5000, None, 0, MAX).unwrap();
        assert!(r.set_context(b"phone", Some(b"chat:42".to_vec())));
        assert!(!r.set_context(b"tablet", Some(b"chat:42".to_vec())));
        assert!(r.in_context(b"chat:42", 500));
        assert!(!r.in_context(b"chat:7", 500));
        // Past its deadline the device is gone, and its context with it.
        assert!(!r.in_context(b"chat:42", 1000));
        assert!(r.set_context(b"web", Some(b"chat:7".to_vec())));
        r.disconnect(b"web", 600);
        assert!(!r.in_context(b"chat:7", 600));
        assert!(r.set_context(b"phone", None));
        assert!(!r.in_context(b"chat:42", 700));
    }

    fn with_grace(ms: Millis) -> Record {
        Record {
            grace: ms,
            ..Record::default()
        }
    }

    #[test]
    fn scopes_last_while_online_including_grace() {
        let mut r = with_grace(500);
        r.connect(b"d", 60_000, None, 0, MAX).unwrap();
        r.set_scopes(vec![b"b".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(r.scopes, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(r.listed(), Some(0));
        r.activity(50);
        assert_eq!(r.listed(), Some(50));
        r.disconnect(b"d", 100);
        assert_eq!(r.scopes.len(), 2, "kept during the grace period");
        assert_eq!(r.listed(), Some(50));
        r.settle(600);
        assert!(r.scopes.is_empty());
        assert_eq!(r.listed(), None);
    }

    #[test]
    fn a_device_back_within_grace_publishes_nothing_and_keeps_since() {
        let mut r = with_grace(500);
        r.connect(b"d", 60_000, None, 0, MAX).unwrap();
        r.disconnect(b"d", 100);
        // Reads during the grace period show the user still online.
        assert_eq!(r.view(300).status, Status::Online);
        assert_eq!(r.user_timer(), Some(600));
        r.settle(400);
        r.connect(b"d", 60_000, None, 400, MAX).unwrap();
        assert_eq!(events(&mut r), vec![("online", "offline", "connect", 0)]);
        assert_eq!(r.view(2000).since, Some(0));
        assert!(r.leaving.is_none());
    }

    #[test]
    fn without_a_return_the_user_goes_offline_when_grace_ends() {
        let mut r = with_grace(500);
        r.connect(b"d", 60_000, None, 0, MAX).unwrap();
        r.disconnect(b"d", 100);
        assert_eq!(r.view(600).status, Status::Offline);
        r.settle(700);
        let e = &r.events[1];
        assert_eq!(
            (e.status, e.reason, e.ts, e.last_seen),
            (Status::Offline, Reason::Disconnect, 600, Some(100))
        );
        assert_eq!(
            r.view(700).since,
            Some(100),
            "offline since the moment the last device left"
        );
        assert_eq!(r.view(700).last_seen, Some(100));
    }

    #[test]
    fn a_timeout_waits_for_grace_too() {
        let mut r = with_grace(500);
        r.connect(b"d", 1000, None, 0, MAX).unwrap();
        r.settle(1200);
        assert_eq!(r.view(1200).status, Status::Online);
        r.settle(1600);
        let e = &r.events[1];
        assert_eq!(
            (e.status, e.reason, e.ts, e.last_seen),
            (Status::Offline, Reason::Timeout, 1500, Some(0))
        );
    }

    #[test]
    fn privacy_rules_decide_what_another_user_sees() {
        let mut r = Record::default();
        r.connect(b"d", 60_000, None, 100, MAX).unwrap();
        r.disconnect(b"d", 200);
        r.connect(b"d", 60_000, None, 300, MAX).unwrap();
        let everyone = Privacy::default();
        let contacts_only = Privacy {
            online: Audience::Contacts,
            last_seen: Audience::Contacts,
        };
        assert_eq!(r.view_for(400, everyone, false), r.view(400));
        assert_eq!(r.view_for(400, contacts_only, true), r.view(400));
        let hidden = r.view_for(400, contacts_only, false);
        assert_eq!((hidden.status, hidden.devices), (Status::Offline, 0));
        assert_eq!(hidden.last_seen, None);
        let seen_only = Privacy {
            online: Audience::Nobody,
            last_seen: Audience::Everyone,
        };
        // The latest departure, nothing of the current session.
        assert_eq!(r.view_for(400, seen_only, true).last_seen, Some(200));
        let online_only = Privacy {
            online: Audience::Everyone,
            last_seen: Audience::Nobody,
        };
        let view = r.view_for(400, online_only, false);
        assert_eq!((view.status, view.last_seen), (Status::Online, None));
    }

    #[test]
    fn others_see_an_invisible_user_as_they_were_when_they_went_invisible() {
        let mut r = Record::default();
        r.connect(b"d", 60_000, None, 100, MAX).unwrap();
        let invisible = Manual {
            status: Status::Invisible,
            message: None,
            until: None,
        };
        r.set_manual(Some(invisible), 500);
        r.heartbeat(b"d", None, 60_000, 900, MAX).unwrap();
        let seen = r.view_for(1000, Privacy::default(), true);
        assert_eq!(
            (seen.status, seen.devices, seen.last_seen),
            (Status::Offline, 0, Some(500))
        );
        assert_eq!(r.view(1000).status, Status::Invisible);
        assert_eq!(r.view(1000).last_seen, Some(900));
    }
}
