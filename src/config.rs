//! Settings: module arguments at load time, `CONFIG GET/SET presence.<name>` at run time. The server
//! enforces the ranges given at registration (see `lib.rs`), so readers here get valid values.

use crate::args::{MAX_TTL, MIN_TTL};
use crate::model::Millis;
use std::sync::atomic::{AtomicI64, Ordering};

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
pub const MAX_BULK_MAX: i64 = 100_000;

/// Default device TTL (ms).
pub static TIMEOUT: AtomicI64 = AtomicI64::new(TIMEOUT_DEFAULT);
/// How long an offline user's record is kept (ms).
pub static RETENTION: AtomicI64 = AtomicI64::new(RETENTION_DEFAULT);
/// Connected devices per user.
pub static MAX_DEVICES: AtomicI64 = AtomicI64::new(MAX_DEVICES_DEFAULT);
/// Users per PRESENCE.BULK.
pub static MAX_BULK: AtomicI64 = AtomicI64::new(MAX_BULK_DEFAULT);

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
