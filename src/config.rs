//! Settings: module arguments at load time, `CONFIG GET/SET presence.<name>` at run time. Each is
//! defined once here (name, default, range, meaning) and registered from that definition in
//! `lib.rs`; the server enforces the ranges on `CONFIG SET`, so readers here get valid values.

use crate::args::{MAX_FOR, MAX_TTL, MIN_TTL};
use crate::error::Error;
use crate::model::{Millis, Span};
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{RedisError, RedisString};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

const DAY: i64 = 24 * 3600 * 1000;

/// A numeric setting.
pub struct Number {
    pub name: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
    value: AtomicI64,
}

impl Number {
    const fn new(name: &'static str, default: i64, (min, max): (i64, i64)) -> Number {
        Number {
            name,
            default,
            min,
            max,
            value: AtomicI64::new(default),
        }
    }

    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// The value as a count (at least 1: every count setting's minimum).
    fn count(&self) -> usize {
        usize::try_from(self.get()).unwrap_or(1)
    }
}

impl ConfigurationValue<i64> for Number {
    fn get(&self, _ctx: &ConfigurationContext) -> i64 {
        Number::get(self)
    }

    fn set(&self, _ctx: &ConfigurationContext, value: i64) -> Result<(), RedisError> {
        self.value.store(value, Ordering::Relaxed);
        Ok(())
    }
}

/// A yes/no setting.
pub struct Flag {
    pub name: &'static str,
    pub default: bool,
    value: AtomicBool,
}

impl Flag {
    const fn new(name: &'static str, default: bool) -> Flag {
        Flag {
            name,
            default,
            value: AtomicBool::new(default),
        }
    }

    pub fn get(&self) -> bool {
        self.value.load(Ordering::Relaxed)
    }
}

impl ConfigurationValue<bool> for Flag {
    fn get(&self, _ctx: &ConfigurationContext) -> bool {
        Flag::get(self)
    }

    fn set(&self, _ctx: &ConfigurationContext, value: bool) -> Result<(), RedisError> {
        self.value.store(value, Ordering::Relaxed);
        Ok(())
    }
}

/// Default device TTL (ms); a device's TTL has the same range.
pub static TIMEOUT: Number = Number::new("timeout", 60_000, (MIN_TTL, MAX_TTL));
/// How long an offline user's record is kept (ms; 0: forever).
pub static RETENTION: Number = Number::new("retention", 30 * DAY, (0, 400 * DAY));
/// Connected devices per user.
pub static MAX_DEVICES: Number = Number::new("max-devices", 32, (1, 1024));
/// Rooms per device (PRESENCE.JOIN).
pub static MAX_ROOMS: Number = Number::new("max-rooms", 256, (1, 1024));
/// How long a device types after PRESENCE.TYPING unless it types again (ms).
pub static TYPING_TIMEOUT: Number = Number::new("typing-timeout", 6000, (100, 600_000));
/// Users per PRESENCE.BULK. A BULK of 10,000 users takes about 30 ms (see the README): more in
/// one command would hold the server too long.
pub static MAX_BULK: Number = Number::new("max-bulk", 1000, (1, 10_000));
/// How long the offline transition waits after the last device left (ms; 0: not at all).
pub static GRACE: Number = Number::new("grace", 0, (0, 600_000));
/// After how long without activity a connected user is away (ms; 0: never).
pub static AWAY_AFTER: Number = Number::new("away-after", 300_000, (0, MAX_FOR));
/// How often the sweep runs (ms).
pub static SWEEP_INTERVAL: Number = Number::new("sweep-interval", 100, (1, 60_000));
/// Devices one sweep run may remove.
pub static SWEEP_BUDGET: Number = Number::new("sweep-budget", 1000, (1, 1_000_000));
/// Approximate length the events stream is trimmed to.
pub static EVENTS_STREAM_MAXLEN: Number =
    Number::new("events-stream-maxlen", 100_000, (1, 1_000_000_000));
/// The global events channel; empty turns it off.
pub static EVENTS_CHANNEL: StringSetting =
    StringSetting::new("events-channel", "presence:events", false);
/// The stream that also receives every event; empty turns it off. Not in cluster mode (a stream
/// is one key in one slot, and events come from every master).
pub static EVENTS_STREAM: StringSetting = StringSetting::new("events-stream", "", true);
/// Whether device-level changes of users who stay online are announced.
pub static DEVICE_EVENTS: Flag = Flag::new("device-events", false);
/// Whether room events are published on each room's channel.
pub static ROOM_EVENTS: Flag = Flag::new("room-events", true);
/// Whether a manual status outlives the session (no: it ends when the user goes offline).
pub static KEEP_MANUAL_STATUS: Flag = Flag::new("keep-manual-status", true);
/// Whether activity ends a manual `away`.
pub static ACTIVITY_ENDS_AWAY: Flag = Flag::new("activity-ends-away", false);
/// The privacy rules of users who set none of their own (PRESENCE.PRIVACY's ONLINE, LASTSEEN).
pub static PRIVACY_ONLINE: StringSetting =
    StringSetting::choice("privacy-online", "everyone", AUDIENCES);
pub static PRIVACY_LASTSEEN: StringSetting =
    StringSetting::choice("privacy-lastseen", "everyone", AUDIENCES);
const AUDIENCES: &[&str] = &["everyone", "contacts", "nobody"];

/// Every numeric setting, for checking module arguments: the server range-checks `CONFIG SET`,
/// but takes load-time values as defaults without checking them.
const NUMBERS: [&Number; 11] = [
    &TIMEOUT,
    &RETENTION,
    &MAX_DEVICES,
    &MAX_ROOMS,
    &TYPING_TIMEOUT,
    &MAX_BULK,
    &GRACE,
    &AWAY_AFTER,
    &SWEEP_INTERVAL,
    &SWEEP_BUDGET,
    &EVENTS_STREAM_MAXLEN,
];
const STRINGS: [&StringSetting; 4] = [
    &EVENTS_CHANNEL,
    &EVENTS_STREAM,
    &PRIVACY_ONLINE,
    &PRIVACY_LASTSEEN,
];
const FLAGS: [&Flag; 4] = [
    &DEVICE_EVENTS,
    &ROOM_EVENTS,
    &KEEP_MANUAL_STATUS,
    &ACTIVITY_ENDS_AWAY,
];

/// Checks `name value` pairs given after `--loadmodule`; the error says what is wrong.
pub fn check_module_args(args: &[&[u8]]) -> Result<(), Error> {
    if !args.len().is_multiple_of(2) {
        return Err(Error::ArgumentPairs);
    }
    for pair in args.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        if let Some(setting) = STRINGS.iter().find(|s| s.name.as_bytes() == name) {
            setting.check(&String::from_utf8_lossy(value))?;
            continue;
        }
        let shown_name = String::from_utf8_lossy(name).into_owned();
        if FLAGS.iter().any(|f| f.name.as_bytes() == name) {
            if !matches!(value, b"yes" | b"no") {
                return Err(Error::ArgumentNotBool(shown_name));
            }
            continue;
        }
        let Some(setting) = NUMBERS.iter().find(|n| n.name.as_bytes() == name) else {
            return Err(Error::UnknownArgument(shown_name));
        };
        crate::args::integer(value)
            .filter(|v| (setting.min..=setting.max).contains(v))
            .ok_or_else(|| Error::ArgumentOutOfRange {
                name: setting.name,
                min: setting.min,
                max: setting.max,
                given: String::from_utf8_lossy(value).into_owned(),
            })?;
    }
    Ok(())
}

/// Whether the server runs in cluster mode (set at load).
pub static CLUSTER_MODE: AtomicBool = AtomicBool::new(false);

/// A string setting. Unlike the crate's `Mutex<String>`, it refuses values with a NUL byte
/// (which the server's configuration reply could not carry) instead of failing on `CONFIG GET`.
pub struct StringSetting {
    pub name: &'static str,
    pub default: &'static str,
    value: Mutex<String>,
    refused_in_cluster: bool,
    /// The values it may take (empty: any).
    choices: &'static [&'static str],
}

impl StringSetting {
    const fn new(name: &'static str, default: &'static str, refused_in_cluster: bool) -> Self {
        StringSetting {
            name,
            default,
            value: Mutex::new(String::new()),
            refused_in_cluster,
            choices: &[],
        }
    }

    /// A setting that takes one of `choices`.
    const fn choice(
        name: &'static str,
        default: &'static str,
        choices: &'static [&'static str],
    ) -> Self {
        StringSetting {
            name,
            default,
            value: Mutex::new(String::new()),
            refused_in_cluster: false,
            choices,
        }
    }

    /// Whether `text` is a value this setting takes.
    fn check(&self, text: &str) -> Result<(), Error> {
        if text.contains('\0') {
            return Err(Error::NulByte);
        }
        if !self.choices.is_empty() && !self.choices.contains(&text) {
            return Err(Error::ArgumentNotChoice {
                name: self.name,
                choices: self.choices,
                given: text.to_owned(),
            });
        }
        Ok(())
    }

    /// Frees the value (the module is being unloaded).
    pub fn release(&self) {
        match self.value.lock() {
            Ok(mut value) => *value = String::new(),
            Err(poisoned) => *poisoned.into_inner() = String::new(),
        }
    }

    /// A copy of the value (a poisoned lock still holds a valid string).
    pub fn get(&self) -> String {
        match self.value.lock() {
            Ok(value) => value.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ConfigurationValue<RedisString> for StringSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create_from_slice(std::ptr::null_mut(), self.get().as_bytes())
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        let text = value.try_as_str()?;
        self.check(text)
            .map_err(|e| RedisError::String(e.to_string()))?;
        if self.refused_in_cluster && !text.is_empty() && CLUSTER_MODE.load(Ordering::Relaxed) {
            return Err(RedisError::String(Error::StreamInCluster.to_string()));
        }
        let mut stored = match self.value.lock() {
            Ok(stored) => stored,
            Err(poisoned) => poisoned.into_inner(),
        };
        *stored = text.to_owned();
        Ok(())
    }
}

pub fn grace() -> Span {
    Span(GRACE.get())
}

pub fn away_after() -> Span {
    Span(AWAY_AFTER.get())
}

pub fn sweep_interval() -> Millis {
    SWEEP_INTERVAL.get()
}

pub fn sweep_budget() -> usize {
    SWEEP_BUDGET.count()
}

pub fn device_events() -> bool {
    DEVICE_EVENTS.get()
}

pub fn events_channel() -> String {
    EVENTS_CHANNEL.get()
}

pub fn events_stream() -> String {
    EVENTS_STREAM.get()
}

pub fn events_stream_maxlen() -> i64 {
    EVENTS_STREAM_MAXLEN.get()
}

pub fn keep_manual_status() -> bool {
    KEEP_MANUAL_STATUS.get()
}

pub fn activity_ends_away() -> bool {
    ACTIVITY_ENDS_AWAY.get()
}

/// The privacy rules of users who set none of their own.
pub fn default_privacy() -> crate::model::Privacy {
    let audience = |setting: &StringSetting| {
        crate::model::Audience::parse(setting.get().as_bytes()).unwrap_or_default()
    };
    crate::model::Privacy {
        online: audience(&PRIVACY_ONLINE),
        last_seen: audience(&PRIVACY_LASTSEEN),
    }
}

pub fn timeout() -> Span {
    Span(TIMEOUT.get())
}

pub fn retention() -> Span {
    Span(RETENTION.get())
}

pub fn max_devices() -> usize {
    MAX_DEVICES.count()
}

pub fn max_rooms() -> usize {
    MAX_ROOMS.count()
}

pub fn typing_timeout() -> Span {
    Span(TYPING_TIMEOUT.get())
}

pub fn room_events() -> bool {
    ROOM_EVENTS.get()
}

pub fn max_bulk() -> usize {
    MAX_BULK.count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_arguments_are_checked() {
        assert_eq!(check_module_args(&[]), Ok(()));
        assert_eq!(
            check_module_args(&[b"timeout", b"100", b"max-bulk", b"10000"]),
            Ok(())
        );
        assert_eq!(
            check_module_args(&[b"timeout", b"50"]),
            Err(Error::ArgumentOutOfRange {
                name: "timeout",
                min: 100,
                max: 604_800_000,
                given: "50".into()
            })
        );
        assert_eq!(
            check_module_args(&[b"timeout", b"50"])
                .unwrap_err()
                .to_string(),
            "argument 'timeout' must be an integer from 100 to 604800000, got '50'"
        );
        assert!(check_module_args(&[b"max-devices", b"x"]).is_err());
        assert!(check_module_args(&[b"timeout"]).is_err());
        assert_eq!(
            check_module_args(&[b"speed", b"1"]),
            Err(Error::UnknownArgument("speed".into()))
        );
    }
}
