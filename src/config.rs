//! Settings: module arguments at load time, `CONFIG GET/SET presence.<name>` at run time. The server
//! enforces the ranges given at registration (see `lib.rs`), so readers here get valid values.

use crate::args::{MAX_TTL, MIN_TTL};
use crate::model::Millis;
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{RedisError, RedisString};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

pub const DAY: i64 = 24 * 3600 * 1000;

pub const TIMEOUT_DEFAULT: i64 = 60_000;
pub const TIMEOUT_MIN: i64 = MIN_TTL;
pub const TIMEOUT_MAX: i64 = MAX_TTL;

pub const RETENTION_DEFAULT: i64 = 30 * DAY;
pub const RETENTION_MIN: i64 = 1000;
pub const RETENTION_MAX: i64 = 400 * DAY;

pub const MAX_DEVICES_DEFAULT: i64 = 32;
pub const MAX_DEVICES_MIN: i64 = 1;
pub const MAX_DEVICES_MAX: i64 = 1024;

pub const MAX_BULK_DEFAULT: i64 = 1000;
pub const MAX_BULK_MIN: i64 = 1;
/// A BULK of 10,000 users takes about 30 ms (see the README): more in one command would hold
/// the server too long.
pub const MAX_BULK_MAX: i64 = 10_000;

pub const SWEEP_INTERVAL_DEFAULT: i64 = 100;
pub const SWEEP_INTERVAL_MIN: i64 = 1;
pub const SWEEP_INTERVAL_MAX: i64 = 60_000;

pub const SWEEP_BUDGET_DEFAULT: i64 = 1000;
pub const SWEEP_BUDGET_MIN: i64 = 1;
pub const SWEEP_BUDGET_MAX: i64 = 1_000_000;

pub const EVENTS_CHANNEL_DEFAULT: &str = "presence:events";

pub const GRACE_DEFAULT: i64 = 0;
pub const GRACE_MIN: i64 = 0;
pub const GRACE_MAX: i64 = 600_000;

pub const AWAY_AFTER_DEFAULT: i64 = 300_000;
pub const AWAY_AFTER_MIN: i64 = 0;
pub const AWAY_AFTER_MAX: i64 = 30 * DAY;

pub const STREAM_MAXLEN_DEFAULT: i64 = 100_000;
pub const STREAM_MAXLEN_MIN: i64 = 1;
pub const STREAM_MAXLEN_MAX: i64 = 1_000_000_000;

/// Default device TTL (ms).
pub static TIMEOUT: AtomicI64 = AtomicI64::new(TIMEOUT_DEFAULT);
/// How long an offline user's record is kept (ms).
pub static RETENTION: AtomicI64 = AtomicI64::new(RETENTION_DEFAULT);
/// Connected devices per user.
pub static MAX_DEVICES: AtomicI64 = AtomicI64::new(MAX_DEVICES_DEFAULT);
/// Users per PRESENCE.BULK.
pub static MAX_BULK: AtomicI64 = AtomicI64::new(MAX_BULK_DEFAULT);

/// The numeric settings and their ranges, for checking module arguments: the server range-checks
/// `CONFIG SET`, but takes load-time values as defaults without checking them.
pub const RANGES: [(&str, i64, i64); 9] = [
    ("grace", GRACE_MIN, GRACE_MAX),
    ("away-after", AWAY_AFTER_MIN, AWAY_AFTER_MAX),
    ("timeout", TIMEOUT_MIN, TIMEOUT_MAX),
    ("retention", RETENTION_MIN, RETENTION_MAX),
    ("max-devices", MAX_DEVICES_MIN, MAX_DEVICES_MAX),
    ("max-bulk", MAX_BULK_MIN, MAX_BULK_MAX),
    ("sweep-interval", SWEEP_INTERVAL_MIN, SWEEP_INTERVAL_MAX),
    ("sweep-budget", SWEEP_BUDGET_MIN, SWEEP_BUDGET_MAX),
    ("events-stream-maxlen", STREAM_MAXLEN_MIN, STREAM_MAXLEN_MAX),
];

/// Settings that take any string, and the yes/no ones.
const STRINGS: [&str; 2] = ["events-channel", "events-stream"];
const BOOLS: [&str; 1] = ["device-events"];

/// Checks `name value` pairs given after `--loadmodule`; the error says what is wrong.
pub fn check_module_args(args: &[&[u8]]) -> Result<(), String> {
    if !args.len().is_multiple_of(2) {
        return Err("module arguments must be name value pairs".into());
    }
    for pair in args.chunks(2) {
        let name = String::from_utf8_lossy(pair[0]);
        if STRINGS.contains(&name.as_ref()) {
            continue;
        }
        if BOOLS.contains(&name.as_ref()) {
            if !matches!(pair[1], b"yes" | b"no") {
                return Err(format!("argument '{name}' must be yes or no"));
            }
            continue;
        }
        let Some((_, min, max)) = RANGES.iter().find(|(n, _, _)| *n == name) else {
            return Err(format!("unknown module argument '{name}'"));
        };
        let value = std::str::from_utf8(pair[1])
            .ok()
            .and_then(|v| v.parse::<i64>().ok());
        match value {
            Some(v) if (*min..=*max).contains(&v) => {}
            _ => {
                return Err(format!(
                    "argument '{name}' must be an integer from {min} to {max}, got '{}'",
                    String::from_utf8_lossy(pair[1])
                ))
            }
        }
    }
    Ok(())
}

/// How long the offline transition waits after the last device left (ms; 0: not at all).
pub static GRACE: AtomicI64 = AtomicI64::new(GRACE_DEFAULT);
/// After how long without activity a connected user is away (ms; 0: never).
pub static AWAY_AFTER: AtomicI64 = AtomicI64::new(AWAY_AFTER_DEFAULT);
/// How often the sweep runs (ms).
pub static SWEEP_INTERVAL: AtomicI64 = AtomicI64::new(SWEEP_INTERVAL_DEFAULT);
/// Devices one sweep run may remove.
pub static SWEEP_BUDGET: AtomicI64 = AtomicI64::new(SWEEP_BUDGET_DEFAULT);
/// The global events channel; empty turns it off.
pub static EVENTS_CHANNEL: StringSetting = StringSetting::new(false);
/// Whether device-level changes of users who stay online are announced.
pub static DEVICE_EVENTS: AtomicBool = AtomicBool::new(false);
/// The stream that also receives every event; empty turns it off. Not in cluster mode (a stream
/// is one key in one slot, and events come from every master).
pub static EVENTS_STREAM: StringSetting = StringSetting::new(true);

/// Whether the server runs in cluster mode (set at load).
pub static CLUSTER_MODE: AtomicBool = AtomicBool::new(false);

pub const STREAM_IN_CLUSTER: &str = "events-stream is not available in cluster mode: a stream is \
     one key in one slot, and events come from every master (use the per-user sharded channels \
     or the global channel)";

/// A string setting. Unlike the crate's `Mutex<String>`, it refuses values with a NUL byte
/// (which the server's configuration reply could not carry) instead of failing on `CONFIG GET`.
pub struct StringSetting {
    value: Mutex<String>,
    refused_in_cluster: bool,
}

impl StringSetting {
    const fn new(refused_in_cluster: bool) -> Self {
        StringSetting {
            value: Mutex::new(String::new()),
            refused_in_cluster,
        }
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
        if text.contains('\0') {
            return Err(RedisError::Str("the value must not contain a NUL byte"));
        }
        if self.refused_in_cluster && !text.is_empty() && CLUSTER_MODE.load(Ordering::Relaxed) {
            return Err(RedisError::Str(STREAM_IN_CLUSTER));
        }
        let mut stored = match self.value.lock() {
            Ok(stored) => stored,
            Err(poisoned) => poisoned.into_inner(),
        };
        *stored = text.to_owned();
        Ok(())
    }
}
/// Approximate length the events stream is trimmed to.
pub static EVENTS_STREAM_MAXLEN: AtomicI64 = AtomicI64::new(STREAM_MAXLEN_DEFAULT);

pub fn grace() -> Millis {
    GRACE.load(Ordering::Relaxed)
}

pub fn away_after() -> Millis {
    AWAY_AFTER.load(Ordering::Relaxed)
}

pub fn sweep_interval() -> Millis {
    SWEEP_INTERVAL.load(Ordering::Relaxed)
}

pub fn sweep_budget() -> usize {
    usize::try_from(SWEEP_BUDGET.load(Ordering::Relaxed)).unwrap_or(1)
}

pub fn device_events() -> bool {
    DEVICE_EVENTS.load(Ordering::Relaxed)
}

pub fn events_channel() -> String {
    EVENTS_CHANNEL.get()
}

pub fn events_stream() -> String {
    EVENTS_STREAM.get()
}

pub fn events_stream_maxlen() -> i64 {
    EVENTS_STREAM_MAXLEN.load(Ordering::Relaxed)
}

pub fn timeout() -> Millis {
    TIMEOUT.load(Ordering::Relaxed)
}

pub fn retention() -> Millis {
    RETENTION.load(Ordering::Relaxed)
}

pub fn max_devices() -> usize {
    usize::try_from(MAX_DEVICES.load(Ordering::Relaxed)).unwrap_or(1)
}

pub fn max_bulk() -> usize {
    usize::try_from(MAX_BULK.load(Ordering::Relaxed)).unwrap_or(1)
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
            Err("argument 'timeout' must be an integer from 100 to 604800000, got '50'".into())
        );
        assert!(check_module_args(&[b"max-devices", b"x"]).is_err());
        assert!(check_module_args(&[b"timeout"]).is_err());
        assert_eq!(
            check_module_args(&[b"speed", b"1"]),
            Err("unknown module argument 'speed'".into())
        );
    }
}
