//! The `INFO presence` section and the counters behind it. Commands, the sweep and the event
//! publisher add to them.

use crate::keys::SLOTS;
use crate::{guard, listing};
use redis_module::{InfoContext, RedisResult};
use redis_module_macros::info_command_handler;
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
pub static ROOM_EVENTS_PUBLISHED: Stat = Stat::new();
pub static SWEEP_RUNS: Stat = Stat::new();
pub static SWEEP_LAST_US: Stat = Stat::new();
pub static SWEEP_LAG_MS: Stat = Stat::new();
/// Full passes of the reconciliation over every slot and record, and the entries it repaired
/// (index or listing entries no record explains, records that had lost index entries or a TTL).
pub static RECONCILE_PASSES: Stat = Stat::new();
pub static REPAIRS: Stat = Stat::new();

#[info_command_handler]
fn presence_info(ctx: &InfoContext, for_crash_report: bool) -> RedisResult<()> {
    guard::callback("INFO", || section(ctx, for_crash_report)).unwrap_or(Ok(()))
}

fn section(ctx: &InfoContext, for_crash_report: bool) -> RedisResult<()> {
    let (clock_offset, master_skew) = crate::clock::offsets();
    let fields: [(&str, i64); 16] = [
        ("users_online", USERS_ONLINE.get()),
        ("devices_online", DEVICES_ONLINE.get()),
        ("heartbeats", HEARTBEATS.get()),
        ("connects", CONNECTS.get()),
        ("disconnects", DISCONNECTS.get()),
        ("timeouts", TIMEOUTS.get()),
        ("events_published", EVENTS_PUBLISHED.get()),
        ("room_events_published", ROOM_EVENTS_PUBLISHED.get()),
        ("sweep_runs", SWEEP_RUNS.get()),
        ("sweep_last_us", SWEEP_LAST_US.get()),
        ("sweep_lag_ms", SWEEP_LAG_MS.get()),
        ("reconcile_passes", RECONCILE_PASSES.get()),
        ("repairs", REPAIRS.get()),
        ("panics", guard::panics()),
        ("clock_offset_ms", clock_offset),
        ("master_clock_skew_ms", master_skew.unwrap_or(0)),
    ];
    let mut section = ctx.builder().add_section("");
    for (name, value) in fields {
        section = section.field(name, value)?;
    }
    // Not in a crash report: the directory's lock might be held by the code that crashed.
    if !for_crash_report {
        let listed = i64::try_from(listing::directory().count()).unwrap_or(i64::MAX);
        let scopes = listing::room_index().rooms() as i64;
        section = section.field("listed", listed)?.field("scopes", scopes)?;
    }
    section.build_section()?.build_info()?;
    Ok(())
}
