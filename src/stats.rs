//! Counters for `INFO presence`. Commands, the sweep and the event publisher add to them.

use crate::keys::SLOTS;
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

/// A gauge kept per cluster slot, so that a recount of one slot's keys can correct it without
/// stopping the world: writes add to their slot, a recount replaces the slot's value.
pub struct SlotGauge {
    per_slot: [AtomicI64; SLOTS],
    total: AtomicI64,
}

impl SlotGauge {
    const fn new() -> Self {
        SlotGauge {
            per_slot: [const { AtomicI64::new(0) }; SLOTS],
            total: AtomicI64::new(0),
        }
    }

    pub fn add(&self, slot: u16, n: i64) {
        self.per_slot[usize::from(slot) % SLOTS].fetch_add(n, Ordering::Relaxed);
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// The slot's value as counted from its keys.
    pub fn set(&self, slot: u16, n: i64) {
        let old = self.per_slot[usize::from(slot) % SLOTS].swap(n, Ordering::Relaxed);
        self.total.fetch_add(n - old, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Users with at least one registered device, and registered devices: kept by this node's writes,
/// recounted from the due indexes after loading and on promotion, and slot by slot by the sweep's
/// reconciliation (which corrects what vanished without a write: evicted or deleted keys).
pub static USERS_ONLINE: SlotGauge = SlotGauge::new();
pub static DEVICES_ONLINE: SlotGauge = SlotGauge::new();
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
/// Full passes of the reconciliation over every slot and record, and the entries it repaired
/// (index or listing entries no record explains, records that had lost index entries or a TTL).
pub static RECONCILE_PASSES: Stat = Stat::new();
pub static REPAIRS: Stat = Stat::new();
