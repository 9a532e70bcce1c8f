//! The presence model: what a user's record holds and how commands and time change it.
//!
//! Pure logic with no Redis types, so every rule is unit-tested without a server. Time is passed in
//! (milliseconds since the epoch); nothing here reads a clock.
//!
//! The rule that keeps reads exact without a timer: a device is connected only while `now` is before
//! its deadline (last heartbeat + TTL). Reads compute the view at `now`, and every write first
//! [`settle`](Record::settle)s the record, removing devices whose deadline passed, so the stored
//! record never disagrees with what reads already showed.

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

/// Everything stored about one user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Registered devices by id. Some may be past their deadline until the record is settled.
    pub devices: BTreeMap<Vec<u8>, Device>,
    /// The latest moment the user was known present through a device that has since left. While
    /// devices are connected, their heartbeats count too (see [`Record::last_seen`]).
    pub last_seen: Option<Millis>,
    /// When the current status began.
    pub since: Option<Millis>,
    /// The number of the latest event announced for this user.
    pub seq: u64,
    /// Whether changes of a user who stays online (a device joins or leaves) are announced too.
    /// A policy set by the caller, not stored.
    pub device_events: bool,
    /// Events announced by the transitions since the record was loaded, oldest first. Not stored.
    pub events: Vec<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Online,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Offline => "offline",
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
}

/// Why an event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Connect,
    Disconnect,
    Timeout,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Disconnect => "disconnect",
            Reason::Timeout => "timeout",
        }
    }
}

/// A change announced to subscribers: of the user's status, or (when device events are on) of
/// the devices of a user who stays online.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub status: Status,
    pub prev: Status,
    pub reason: Reason,
    /// The device that caused it.
    pub device: Vec<u8>,
    /// Connected devices afterwards.
    pub devices: usize,
    pub last_seen: Option<Millis>,
    /// When it happened: the command's time, or for a timeout the device's deadline.
    pub ts: Millis,
    /// Per user: 1 for the first event, one more for each one after.
    pub seq: u64,
}

/// Refusals of a write, reported to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The user already has this many connected devices.
    TooManyDevices(usize),
}

impl Record {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.last_seen.is_none() && self.since.is_none() && self.seq == 0
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

    /// The user as reads report them at `now`.
    pub fn view(&self, now: Millis) -> View {
        let live = self.live_count(now);
        let last_seen = self.last_seen();
        if live > 0 {
            View {
                status: Status::Online,
                devices: live,
                last_seen,
                since: self.since,
            }
        } else if !self.devices.is_empty() {
            // Every device timed out and nothing has removed them yet: offline since the last heartbeat.
            View {
                status: Status::Offline,
                devices: 0,
                last_seen,
                since: last_seen,
            }
        } else {
            View {
                status: Status::Offline,
                devices: 0,
                last_seen: self.last_seen,
                since: self.since,
            }
        }
    }

    /// Removes the devices whose deadline passed by `now`, in deadline order, announcing each
    /// timeout. When the last one goes, the user is offline since their latest heartbeat. Returns
    /// how many devices were removed.
    pub fn settle(&mut self, now: Millis) -> usize {
        let mut expired: Vec<(Millis, Vec<u8>)> = self
            .devices
            .iter()
            .filter(|(_, d)| !d.is_live(now))
            .map(|(id, d)| (d.deadline(), id.clone()))
            .collect();
        expired.sort();
        for (deadline, id) in &expired {
            if let Some(device) = self.devices.remove(id) {
                self.last_seen = Some(self.last_seen.map_or(device.last_heartbeat, |seen| {
                    seen.max(device.last_heartbeat)
                }));
                if self.devices.is_empty() {
                    self.since = self.last_seen;
                }
                self.announce(Reason::Timeout, id, *deadline);
            }
        }
        expired.len()
    }

    /// Registers `device`, or refreshes it when it is connected (keeping its `connected_at`, and
    /// its META unless a new one is given). Expects a settled record. Returns the number of
    /// connected devices afterwards.
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
            return Ok(self.devices.len());
        }
        if self.devices.len() >= max_devices {
            return Err(Refusal::TooManyDevices(self.devices.len()));
        }
        if self.devices.is_empty() {
            self.since = Some(now);
        }
        self.devices.insert(
            device.to_vec(),
            Device {
                connected_at: now,
                last_heartbeat: now,
                ttl,
                meta,
            },
        );
        self.announce(Reason::Connect, device, now);
        Ok(self.devices.len())
    }

    /// Pushes a connected device's deadline to `now + ttl` (its own TTL when none is given), or
    /// registers it with `ttl` or `default_ttl` when it is not connected. Expects a settled record.
    /// Returns whether the device was already connected.
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

    /// Removes a device that left cleanly. Expects a settled record. Returns the number of devices
    /// left, or `None` when the device was not connected (and nothing changed).
    pub fn disconnect(&mut self, device: &[u8], now: Millis) -> Option<usize> {
        self.devices.remove(device)?;
        self.last_seen = Some(self.last_seen.map_or(now, |seen| seen.max(now)));
        if self.devices.is_empty() {
            self.since = self.last_seen;
        }
        self.announce(Reason::Disconnect, device, now);
        Some(self.devices.len())
    }

    /// Records the event of a device change that just happened: a status change when the device
    /// was the user's first or last, otherwise a device-level one if those are on.
    fn announce(&mut self, reason: Reason, device: &[u8], ts: Millis) {
        let devices = self.devices.len();
        let (status, prev) = match (reason, devices) {
            (Reason::Connect, 1) => (Status::Online, Status::Offline),
            (Reason::Disconnect | Reason::Timeout, 0) => (Status::Offline, Status::Online),
            _ if self.device_events => (Status::Online, Status::Online),
            _ => return,
        };
        self.seq += 1;
        self.events.push(Event {
            status,
            prev,
            reason,
            device: device.to_vec(),
            devices,
            last_seen: if status == Status::Online {
                self.last_seen()
            } else {
                self.last_seen
            },
            ts,
            seq: self.seq,
        });
    }

    /// When the whole record may disappear: `retention` after the user went offline. `None`
    /// while devices are connected (the record is kept) or when there is nothing to keep.
    pub fn expires_at(&self, retention: Millis) -> Option<Millis> {
        if !self.devices.is_empty() {
            return None;
        }
        self.last_seen.map(|t| t.saturating_add(retention))
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
                since: None
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
    fn status_changes_are_announced_with_growing_seq() {
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
                ("online", "offline", "connect", "a".into(), 1, 1),
                ("offline", "online", "disconnect", "b".into(), 0, 2),
                ("online", "offline", "connect", "c".into(), 1, 3),
                ("offline", "online", "timeout", "c".into(), 0, 4),
            ]
        );
        let timeout = &r.events[3];
        assert_eq!((timeout.ts, timeout.last_seen), (1600, Some(600)));
        assert_eq!(r.events[1].last_seen, Some(500));
        assert_eq!(r.events[0].last_seen, Some(100));
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
                ("online", "offline", "connect", "a".into(), 1, 1),
                ("online", "online", "connect", "b".into(), 2, 2),
                ("online", "online", "timeout", "a".into(), 1, 3),
                ("offline", "online", "disconnect", "b".into(), 0, 4),
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
                ("online", "online", "timeout", "early".into(), 1, 3),
                ("offline", "online", "timeout", "late".into(), 0, 4),
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
        assert_eq!(r.seq, 1);
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
        assert_eq!(r.expires_at(10), None);
        r.connect(b"a", 1000, None, 100, MAX).unwrap();
        r.connect(b"b", 5000, None, 200, MAX).unwrap();
        assert_eq!(r.expires_at(10), None);
        r.disconnect(b"a", 300);
        r.disconnect(b"b", 400);
        assert_eq!(r.expires_at(10), Some(410));
    }

    #[test]
    fn huge_ttls_and_times_do_not_overflow() {
        let d = Device {
            connected_at: 0,
            last_heartbeat: Millis::MAX - 1,
            ttl: Millis::MAX,
            meta: None,
        };
        assert_eq!(d.deadline(), Millis::MAX);
        let mut r = Record::default();
        r.devices.insert(b"d".to_vec(), d);
        r.settle(Millis::MAX);
        assert_eq!(r.expires_at(Millis::MAX), Some(Millis::MAX));
    }
}
