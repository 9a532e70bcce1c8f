//! Counters for `INFO presence`. Commands, the sweep and the event publisher add to them.

use std::sync::atomic::{AtomicI64, Ordering};

/// A counter or gauge shared by the command and timer callbacks (which all run on the main thread).
pub struct Stat(AtomicI64);

impl Stat {
    const fn new() -> Self {
        Stat(AtomicI64::new(0))
    }

    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Users with at least one registered device, and registered devices, as this node's writes left
/// them (recounted from the keys after loading and on promotion).
pub static USERS_ONLINE: Stat = Stat::new();
pub static DEVICES_ONLINE: Stat = Stat::new();
pub static HEARTBEATS: Stat = Stat::new();
pub static CONNECTS: Stat = Stat::new();
pub static DISCONNECTS: Stat = Stat::new();
pub static TIMEOUTS: Stat = Stat::new();
pub static EVENTS_PUBLISHED: Stat = Stat::new();
pub static SWEEP_RUNS: Stat = Stat::new();
pub static SWEEP_LAST_US: Stat = Stat::new();
pub static SWEEP_LAG_MS: Stat = Stat::new();
/// Panics caught before they reached the server (each one is in the log).
pub static PANICS: Stat = Stat::new();
