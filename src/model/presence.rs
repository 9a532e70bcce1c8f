//! How commands and time change a user's record, under the settings that decide it.

use super::{
    Device, Event, Leaving, Manual, Millis, Privacy, Reason, Record, Refusal, RoomEvent, RoomsSeen,
    Span, Status, View,
};
use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

/// The settings that decide how a record changes (not stored with it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Whether changes of a user who stays online (a device joins or leaves) are announced too.
    pub device_events: bool,
    /// After how long without activity a connected user is away (0: never).
    pub away_after: Span,
    /// How long the offline transition waits after the last device left (flap suppression).
    pub grace: Span,
    /// Whether a manual status ends when the user goes offline (else it is kept for the next
    /// session).
    pub manual_ends_offline: bool,
    /// Whether activity ends a manual `away`.
    pub activity_ends_away: bool,
}

/// A user's record under the [`Rules`], as commands and time change it. The events its changes
/// announce pile up until [`take_events`](Presence::take_events) hands them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub record: Record,
    pub rules: Rules,
    /// Events announced since the record was read (or since they were last taken), oldest first.
    pub events: Vec<Event>,
    /// Room events likewise, and what the rooms' subscribers saw after the last of them (`None`:
    /// a record read only to be shown, whose changes are not announced).
    pub room_events: Vec<RoomEvent>,
    pub rooms_seen: Option<RoomsSeen>,
}

impl Default for Presence {
    /// A user with no record yet, under the default rules, to be changed.
    fn default() -> Presence {
        Presence::new(Record::default(), Rules::default())
    }
}

impl Deref for Presence {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}

impl DerefMut for Presence {
    fn deref_mut(&mut self) -> &mut Record {
        &mut self.record
    }
}

/// A change that comes with time, found by [`Presence::settle`].
enum Due {
    Device(Vec<u8>),
    ManualEnds,
    Idle,
    GraceEnds,
    TypingEnds(Vec<u8>),
}

impl Presence {
    /// A user's record under `rules`, to be changed: what its rooms' subscribers see is noted, so
    /// that each change announces its difference.
    pub fn new(record: Record, rules: Rules) -> Presence {
        Presence {
            rooms_seen: Some(record.rooms_seen()),
            ..Presence::to_show(record, rules)
        }
    }

    /// A user's record under `rules`, read to be shown: settling a copy for a read announces no
    /// room event, so nothing is noted (a read need not pay for it).
    pub fn to_show(record: Record, rules: Rules) -> Presence {
        Presence {
            record,
            rules,
            events: Vec::new(),
            room_events: Vec::new(),
            rooms_seen: None,
        }
    }

    /// A user with no record yet, under `rules`.
    pub fn with_rules(rules: Rules) -> Presence {
        Presence::new(Record::default(), rules)
    }

    /// The events announced so far, oldest first; none are left.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The moment an active, connected user with no manual status goes idle.
    fn idle_at(&self) -> Option<Millis> {
        if !self.rules.away_after.is_positive() || self.manual.is_some() || self.devices.is_empty()
        {
            return None;
        }
        self.last_active
            .map(|active| self.rules.away_after.after(active))
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
        self.leaving.as_ref().map(|l| self.rules.grace.after(l.at))
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
    /// The moment the user's own timer fires: the end of the manual status, of a grace period, or
    /// of a device's typing. (Device deadlines have entries of their own in the due index, and going idle is
    /// found through the listing of everyone, whose scores are the users' last activity.)
    pub fn user_timer(&self) -> Option<Millis> {
        self.manual
            .as_ref()
            .and_then(|m| m.until)
            .into_iter()
            .chain(self.grace_ends())
            .chain(self.typing_ends())
            .min()
    }
    /// The user as reads report them at `now`: as if settled then, without changing anything.
    pub fn view(&self, now: Millis) -> View {
        self.settled_at(now).view_settled()
    }
    /// The record as settled at `now`, copied only when time changed something.
    fn settled_at(&self, now: Millis) -> Cow<'_, Presence> {
        if self.next_change().is_some_and(|at| at <= now) {
            let mut settled = self.clone();
            settled.events.clear();
            settled.room_events.clear();
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
                view.last_device = None;
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
            scopes: Vec::new(),
            last_device: record.last_device.clone().filter(|_| shows_last_seen),
        }
    }
    /// Carries out, in the order they came, the changes that time brought by `now`: devices past
    /// their deadline leave (announced as timeouts; when the last goes the user is offline since
    /// their latest heartbeat), a manual status that ran out ends, a connected user without
    /// activity for `away_after` becomes away. Returns how many devices were removed.
    pub fn settle(&mut self, now: Millis) -> usize {
        self.settle_at_most(now, usize::MAX)
    }
    /// As [`settle`](Presence::settle), but stops before removing more than `max_devices` devices
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
            for (id, d) in &self.devices {
                if let Some(typing) = &d.typing {
                    consider(typing.until, Due::TypingEnds(id.clone()));
                }
            }
            let Some((at, due)) = next else {
                return removed;
            };
            match due {
                Due::Device(_) if removed >= max_devices => return removed,
                Due::Device(id) => {
                    if let Some(device) = self.devices.remove(&id) {
                        // Seen last at its last heartbeat, or at the latest activity if the
                        // user was active after it.
                        let seen = device.last_heartbeat.max(
                            self.last_active
                                .filter(|active| *active <= at)
                                .unwrap_or(Millis::MIN),
                        );
                        self.last_seen = Some(self.last_seen.map_or(seen, |old| old.max(seen)));
                        self.last_device = Some(id.clone());
                        removed += 1;
                        self.left(Reason::Timeout, &id, at);
                        // Offline by timeout: since the last heartbeat, as last_seen says.
                        let since = self.last_seen.unwrap_or(at);
                        self.changed(Reason::Timeout, &id, at, since, false);
                    }
                }
                Due::ManualEnds => {
                    let had_message = self.message_shown();
                    self.manual = None;
                    self.changed(Reason::Expired, b"", at, at, had_message.is_some());
                }
                Due::Idle => self.changed(Reason::Idle, b"", at, at, false),
                Due::GraceEnds => {
                    if let Some(leaving) = self.leaving.take() {
                        let since = self.last_seen.unwrap_or(leaving.at);
                        self.changed(leaving.reason, &leaving.device, at, since, false);
                    }
                }
                Due::TypingEnds(id) => {
                    if let Some(d) = self.devices.get_mut(&id) {
                        d.typing = None;
                    }
                    self.announce_rooms(Reason::Timeout, at);
                }
            }
        }
    }
    /// Registers `device`, or refreshes it when it is connected (keeping its `connected_at`, and
    /// its META unless a new one is given), and places the user in `scopes` when given (replacing
    /// the ones they had). Connecting is activity. Expects a settled record. Returns the number of
    /// connected devices afterwards.
    pub fn connect(
        &mut self,
        device: &[u8],
        ttl: Span,
        meta: Option<String>,
        scopes: Option<Vec<Vec<u8>>>,
        now: Millis,
        max_devices: usize,
    ) -> Result<usize, Refusal> {
        let known = self.devices.contains_key(device);
        if !known && self.devices.len() >= max_devices {
            return Err(Refusal::TooManyDevices(self.devices.len()));
        }
        let scopes_changed = match scopes {
            Some(scopes) => self.set_scopes(scopes),
            None => false,
        };
        let message_changed = self.ends_away_by_activity();
        let detail_changed = scopes_changed || message_changed;
        if let Some(existing) = self.devices.get_mut(device) {
            existing.last_heartbeat = now;
            existing.ttl = ttl;
            if meta.is_some() {
                existing.meta = meta;
            }
            self.last_active = Some(now);
            self.changed(Reason::Active, device, now, now, detail_changed);
            return Ok(self.devices.len());
        }
        // Back within the grace period: the departure never happened for anyone else.
        self.leaving = None;
        let order = self
            .devices
            .values()
            .map(|d| d.order.saturating_add(1))
            .max()
            .unwrap_or(0);
        self.devices.insert(
            device.to_vec(),
            Device {
                connected_at: now,
                last_heartbeat: now,
                ttl,
                meta,
                context: None,
                order,
                ..Device::default()
            },
        );
        self.last_active = Some(now);
        self.changed(Reason::Connect, device, now, now, detail_changed);
        Ok(self.devices.len())
    }
    /// Pushes a connected device's deadline to `now + ttl` (its own TTL when none is given), or
    /// registers it with `ttl` or `default_ttl` when it is not connected. A heartbeat is not
    /// activity (registering is). Expects a settled record. Returns whether the device was
    /// already connected.
    pub fn heartbeat(
        &mut self,
        device: &[u8],
        ttl: Option<Span>,
        meta: Option<String>,
        default_ttl: Span,
        now: Millis,
        max_devices: usize,
    ) -> Result<bool, Refusal> {
        if let Some(existing) = self.devices.get_mut(device) {
            existing.last_heartbeat = now;
            if let Some(ttl) = ttl {
                existing.ttl = ttl;
            }
            if meta.is_some() {
                existing.meta = meta;
            }
            return Ok(true);
        }
        let ttl = ttl.unwrap_or(default_ttl);
        self.connect(device, ttl, meta, None, now, max_devices)?;
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
            ttl: Span::ZERO,
            meta: None,
            context: None,
            order: 0,
            ..Device::default()
        };
        self.devices.insert(device.to_vec(), device_back);
    }
    /// Removes a device that left cleanly. Expects a settled record. Returns the number of devices
    /// left, or `None` when the device was not connected (and nothing changed).
    pub fn disconnect(&mut self, device: &[u8], now: Millis) -> Option<usize> {
        self.devices.remove(device)?;
        self.last_seen = Some(self.last_seen.map_or(now, |seen| seen.max(now)));
        self.last_device = Some(device.to_vec());
        self.left(Reason::Disconnect, device, now);
        self.changed(Reason::Disconnect, device, now, now, false);
        Some(self.devices.len())
    }
    /// A device left at `at`: when it was the last and a grace period applies, the offline
    /// transition waits for it to end.
    fn left(&mut self, reason: Reason, device: &[u8], at: Millis) {
        if self.devices.is_empty()
            && self.rules.grace.is_positive()
            && self.status != Status::Offline
        {
            self.leaving = Some(Leaving {
                at,
                reason,
                device: device.to_vec(),
            });
        }
    }
    /// Records activity (a message sent, typing, the app in the foreground). Expects a settled
    /// record.
    pub fn activity(&mut self, now: Millis) {
        let message_changed = self.ends_away_by_activity();
        self.last_active = Some(now);
        self.changed(Reason::Active, b"", now, now, message_changed);
    }
    /// Ends a manual `away` when the rules say activity does; whether that took away a message
    /// others saw.
    fn ends_away_by_activity(&mut self) -> bool {
        if !self.rules.activity_ends_away
            || !self
                .manual
                .as_ref()
                .is_some_and(|m| m.status == Status::Away)
        {
            return false;
        }
        let message = self.message_shown();
        self.manual = None;
        message.is_some()
    }
    /// The custom message others see now (none while the user looks offline).
    fn message_shown(&self) -> Option<String> {
        if self.status.public() == Status::Offline {
            return None;
        }
        self.manual.as_ref().and_then(|m| m.message.clone())
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
        let message = self.message_shown();
        self.manual = manual;
        let status = self.status_at(now);
        let message_after = self
            .manual
            .as_ref()
            .and_then(|m| m.message.clone())
            .filter(|_| status.public() != Status::Offline);
        self.changed(Reason::Manual, b"", now, now, message != message_after);
    }
    /// After a change caused by `reason` at `at`: if the status moved, record it (since `since`)
    /// and announce it when everyone else can see the difference; if only the devices changed,
    /// announce that when device events are on and the user is visible; if something else others
    /// see changed (`detail_changed`: the message, the scopes), announce that while visible.
    fn changed(
        &mut self,
        reason: Reason,
        device: &[u8],
        at: Millis,
        since: Millis,
        detail_changed: bool,
    ) {
        self.announce_status(reason, device, at, since, detail_changed);
        self.announce_rooms(reason, at);
    }

    /// The user-level half of [`changed`](Presence::changed).
    fn announce_status(
        &mut self,
        reason: Reason,
        device: &[u8],
        at: Millis,
        since: Millis,
        detail_changed: bool,
    ) {
        let prev = self.status;
        let status = self.status_at(at);
        let devices = self.devices.len();
        let device_change = matches!(
            reason,
            Reason::Connect | Reason::Disconnect | Reason::Timeout
        );
        let visible = status.public() != Status::Offline;
        // The scopes they had, for an event that takes them offline.
        let scopes = self.scopes.clone();
        if status == Status::Offline {
            // Scopes hold only while online; so does a manual status, under that rule (one set
            // while offline waits for the next session).
            self.scopes.clear();
            if self.rules.manual_ends_offline && prev != Status::Offline {
                self.manual = None;
            }
        }
        if status != prev {
            self.status = status;
            self.since = Some(since);
            if status.public() == prev.public() {
                return; // invisible came or went while offline: nothing anyone can see
            }
        } else if !(visible && detail_changed)
            && !(device_change
                && self.rules.device_events
                && visible
                && (devices > 0 || self.leaving.is_none()))
        {
            return;
        }
        self.seq = super::next_seq(self.seq, at);
        let last_seen = if visible {
            self.last_seen()
        } else {
            self.last_seen
        };
        let meta = match reason {
            Reason::Connect => self
                .devices
                .get(device)
                .and_then(|d| d.meta.clone())
                .filter(|meta| meta.len() <= super::EVENT_META_MAX),
            _ => None,
        };
        self.events.push(Event {
            status: status.public(),
            prev: prev.public(),
            reason,
            device: device.to_vec(),
            devices,
            last_seen,
            message: self.message_shown(),
            scopes,
            meta,
            ts: at,
            seq: self.seq,
        });
    }
}
