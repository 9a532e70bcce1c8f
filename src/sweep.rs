//! The sweep: a timer that removes devices whose deadline passed and announces it.
//!
//! Due devices are found through the per-slot due indexes (devices scored by their deadline),
//! never by scanning users. To skip the slots with nothing due without opening 16384
//! keys per run, the module keeps in memory, per slot, a deadline at or before the slot's earliest
//! one: writes lower it, the sweep sets it to the index's true first score after visiting the slot.
//! The memory copy is only a hint: after loading, on promotion and after a flush every slot is
//! checked again, and each run re-reads a few slots in rotation, so entries that arrive by other
//! ways (a replication stream, a restored key) are found within a bounded time.

use crate::keys::SLOTS;
use crate::model::Millis;
use crate::{config, keys, stats, store};
use redis_module::{raw, Context, ContextFlags};
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// "Unknown: look at this slot on the next run."
const UNKNOWN: Millis = Millis::MIN;
/// "Nothing registered in this slot."
const NOTHING: Millis = Millis::MAX;
/// Slots re-read by every run whatever their hint says (a full rotation every 256 runs).
const REFRESH_PER_RUN: usize = 64;
/// Users taken from one slot's index per read.
const BATCH: usize = 128;

static NEXT_DUE: [AtomicI64; SLOTS] = [const { AtomicI64::new(UNKNOWN) }; SLOTS];
static CURSOR: AtomicUsize = AtomicUsize::new(0);
/// The armed timer, so that a new `sweep-interval` can replace it at once.
static TIMER: AtomicU64 = AtomicU64::new(0);
static TIMER_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// A context of the module's own, for re-arming the timer from a configuration change.
static MODULE_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// A write gave a user of `slot` a deadline.
pub fn note_deadline(slot: u16, deadline: Millis) {
    NEXT_DUE[usize::from(slot) % SLOTS].fetch_min(deadline, Ordering::Relaxed);
}

/// Forget every hint: the next run looks at every slot.
pub fn recheck_all() {
    for hint in &NEXT_DUE {
        hint.store(UNKNOWN, Ordering::Relaxed);
    }
}

/// Whether this server may change data now: a master, not loading, not pausing writes for a
/// failover.
pub fn may_write(ctx: &Context) -> bool {
    let flags = ctx.get_flags();
    flags.contains(ContextFlags::MASTER)
        && !flags.contains(ContextFlags::LOADING)
        && !ctx.avoid_replication_traffic()
}

/// Starts the timer at load; it re-arms itself after every run.
pub fn start(ctx: &Context) {
    // SAFETY: called once at load with the module's context.
    let own =
        unsafe { raw::RedisModule_GetDetachedThreadSafeContext.unwrap_unchecked()(ctx.get_raw()) };
    MODULE_CTX.store(own, Ordering::Relaxed);
    arm(ctx);
}

fn arm(ctx: &Context) {
    let period = Duration::from_millis(config::sweep_interval().max(1) as u64);
    TIMER.store(ctx.create_timer(period, tick, ()), Ordering::Relaxed);
    TIMER_ARMED.store(true, Ordering::Relaxed);
}

fn tick(ctx: &Context, _: ()) {
    TIMER_ARMED.store(false, Ordering::Relaxed);
    if may_write(ctx) {
        run(ctx, config::sweep_budget());
    }
    arm(ctx);
}

/// `sweep-interval` changed: replace the armed timer so the new period applies now, not after a
/// possibly long old one. Runs on the main thread, from CONFIG SET.
pub fn interval_changed() {
    let own = MODULE_CTX.load(Ordering::Relaxed);
    if own.is_null() {
        return; // still loading: `start` arms the timer with the value set
    }
    let ctx = Context::new(own);
    if TIMER_ARMED.swap(false, Ordering::Relaxed) {
        // The data is a zero-sized `()`; nothing is freed wrongly.
        let _ = ctx.stop_timer::<()>(TIMER.load(Ordering::Relaxed));
    }
    arm(&ctx);
}

/// One sweep: removes devices past their deadline, at most `budget` (each user visited counts
/// at least one). Returns the number of devices removed.
pub fn run(ctx: &Context, budget: usize) -> usize {
    let started = Instant::now();
    let now = store::now();
    let first = CURSOR.load(Ordering::Relaxed) % SLOTS;
    let mut spent = 0usize;
    let mut removed = 0usize;
    let mut stopped_at = None;
    for i in 0..SLOTS {
        let slot = (first + i) % SLOTS;
        if i >= REFRESH_PER_RUN && NEXT_DUE[slot].load(Ordering::Relaxed) > now {
            continue;
        }
        if spent >= budget {
            stopped_at = Some(slot);
            break;
        }
        let (work, gone) = sweep_slot(ctx, slot as u16, now, budget - spent);
        spent += work;
        removed += gone;
    }
    // After a backlog, start where this run stopped, so no slot waits behind others.
    CURSOR.store(
        stopped_at.unwrap_or((first + REFRESH_PER_RUN) % SLOTS),
        Ordering::Relaxed,
    );
    let lag = NEXT_DUE
        .iter()
        .map(|hint| hint.load(Ordering::Relaxed))
        .filter(|&due| due != UNKNOWN && due <= now)
        .map(|due| now - due)
        .max()
        .unwrap_or(0);
    stats::SWEEP_RUNS.add(1);
    stats::SWEEP_LAST_US.set(started.elapsed().as_micros() as i64);
    stats::SWEEP_LAG_MS.set(lag);
    removed
}

/// Settles the users of one slot's due devices. Returns (work spent, devices removed).
fn sweep_slot(ctx: &Context, slot: u16, now: Millis, budget: usize) -> (usize, usize) {
    let (mut spent, mut removed) = (0, 0);
    loop {
        let due = store::due_entries(ctx, slot, now, BATCH.min(budget - spent));
        if due.is_empty() {
            break;
        }
        for (member, _) in due {
            let gone = match keys::parse_due_member(&member) {
                Some((user, _)) => settle_user(ctx, user),
                None => 0,
            };
            // Settling removes every due entry of the user; one it cannot explain goes too, so
            // the loop always moves on.
            store::drop_due_entry_if_due(ctx, slot, &member, now);
            spent += gone.max(1);
            removed += gone;
            if spent >= budget {
                // Budget spent: the hint stays at or before what is still due.
                return (spent, removed);
            }
        }
    }
    NEXT_DUE[usize::from(slot)].store(
        store::next_due(ctx, slot).unwrap_or(NOTHING),
        Ordering::Relaxed,
    );
    (spent, removed)
}

/// Removes a user's devices that are past their deadline, as every write does first.
fn settle_user(ctx: &Context, user: &[u8]) -> usize {
    match store::UserWrite::open(ctx, user) {
        Ok(write) => {
            let gone = write.timed_out;
            write.commit(ctx);
            gone
        }
        Err(_) => 0,
    }
}
