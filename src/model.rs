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

/// A device removed because its deadline passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub device: Vec<u8>,
    pub last_heartbeat: Millis,
}

/// Refusals of a write, reported to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The user already has this many connected devices.
    TooManyDevices(usize),
}

impl Record {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.last_seen.is_none() && self.since.is_none()
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

    /// Removes the devices whose deadline passed by `now`. When the last one goes, the user is
    /// offline since their latest heartbeat. Returns the removed devices in id order.
    pub fn settle(&mut self, now: Millis) -> Vec<Expired> {
        let expired: Vec<Vec<u8>> = self
            .devices
            .iter()
            .filter(|(_, d)| !d.is_live(now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut removed = Vec::with_capacity(expired.len());
        for id in expired {
            if let Some(device) = self.devices.remove(&id) {
                self.last_seen = Some(self.last_seen.map_or(device.last_heartbeat, |seen| {
                    seen.max(device.last_heartbeat)
                }));
                removed.push(Expired {
                    device: id,
                    last_heartbeat: device.last_heartbeat,
                });
            }
        }
        if !removed.is_empty() && self.devices.is_empty() {
            self.since = self.last_seen;
        }
        removed
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
        Some(self.devices.len())
    }

    /// The earliest deadline of the registered devices: the record's score in the slot's due index.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.devices.values().map(Device::deadline).min()
    }

    /// When the whole record may disappear: `retention` after the user is (or will at the latest
    /// be) offline.
    pub fn expires_at(&self, retention: Millis) -> Option<Millis> {
        self.devices
            .values()
            .map(Device::deadline)
            .max()
            .or(self.last_seen)
            .map(|t| t.saturating_add(retention))
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
        let removed = r.settle(1450);
        assert_eq!(
            removed,
            vec![Expired {
                device: b"a".to_vec(),
                last_heartbeat: 400
            }]
        );
        assert_eq!(r.view(1450).status, Status::Online);
        assert_eq!(r.view(1450).since, Some(100));
        let removed = r.settle(1500);
        assert_eq!(removed.len(), 1);
        let view = r.view(1500);
        assert_eq!(view.status, Status::Offline);
        assert_eq!(view.last_seen, Some(500));
        assert_eq!(view.since, Some(500));
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
    fn deadlines_and_expiry_follow_the_devices() {
        let mut r = Record::default();
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.expires_at(10), None);
        r.connect(b"a", 1000, None, 100, MAX).unwrap();
        r.connect(b"b", 5000, None, 200, MAX).unwrap();
        assert_eq!(r.next_deadline(), Some(1100));
        assert_eq!(r.expires_at(10), Some(5210));
        r.disconnect(b"a", 300);
        r.disconnect(b"b", 400);
        assert_eq!(r.next_deadline(), None);
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
        assert_eq!(r.expires_at(Millis::MAX), Some(Millis::MAX));
    }
}
