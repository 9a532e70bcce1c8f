//! The sweep: a timer that removes devices whose deadline passed, ends manual statuses and grace
//! periods when their time comes, moves idle users to away, and announces it all.
//!
//! Users go idle `away-after` after their last activity, which is their score in the slot's
//! listing of everyone: the sweep walks each slot's listing upwards from where it last stopped
//! (a position kept in memory), so a user is checked once per stretch of inactivity and needs no
//! timer entry of their own for it.
//!
//! Due devices are found through the per-slot due indexes (devices scored by their deadline),
//! never by scanning users. To skip the slots with nothing due without opening 16384 keys per
//! run, the module keeps a hint per slot (see `deadlines`). After loading, on promotion and after
//! a flush every slot is checked again, and each run re-reads a few slots in rotation, so entries
//! that arrive by other ways (a replication stream, a restored key) are found within a bounded
//! time. Which slots a run visits is decided in [`schedule`]; this file runs the timer.

mod schedule;

pub use schedule::Outcome;

use crate::deadlines::HINTS;
use crate::listing::Position;
use crate::model::Millis;
use crate::server::DetachedContext;
use crate::store::index::{self, DueEntry};
use crate::store::{listings, repair, user::UserWrite};
use crate::{config, guard, keys, migration, reconcile, stats, store};
use redis_module::{Context, ContextFlags};
use schedule::{Keyspace, Limits, Schedule};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest a timer run may take, whatever its budget: a backlog is worked off in runs this short,
/// one right after the other with the event loop serving clients in between.
const RUN_TIME_CAP: Duration = Duration::from_millis(1);
/// Units of reconciliation (see `reconcile`) a run may do after its due work, within its time.
const RECONCILE_BUDGET: usize = 64;
/// How often a master sends its time to its replicas.
const CLOCK_PERIOD: Duration = Duration::from_secs(1);
/// Pause between runs while a backlog remains: none, the next run comes after the event loop has
/// served the clients that are ready.
const BACKLOG_PAUSE: Duration = Duration::from_millis(0);
/// How late the timer may be before the watchdog replaces it.
const TIMER_GRACE: Duration = Duration::from_secs(1);

/// The armed timer, so that a new `sweep-interval` can replace it at once.
static TIMER: AtomicU64 = AtomicU64::new(0);
static TIMER_ARMED: AtomicBool = AtomicBool::new(false);
/// The module is being unloaded or the server shut down: the timer stays stopped.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// A context of the module's own, for re-arming the timer from a configuration change.
fn module_ctx() -> MutexGuard<'static, Option<DetachedContext>> {
    static MODULE_CTX: Mutex<Option<DetachedContext>> = Mutex::new(None);
    MODULE_CTX
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn schedule() -> MutexGuard<'static, Schedule> {
    static SCHEDULE: std::sync::LazyLock<Mutex<Schedule>> =
        std::sync::LazyLock::new(Default::default);
    SCHEDULE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the sweep read the slot's indexes on its next run, and check all its listed users for
/// idleness again (they arrived by another way than this node's writes: a restored key).
pub fn recheck(slot: u16) {
    HINTS.forget(slot);
    schedule().recheck_idle(slot);
}

/// Forget every hint: the next run looks at every slot.
pub fn recheck_all() {
    HINTS.forget_all();
    schedule().recheck_all_idle();
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
    *module_ctx() = Some(DetachedContext::new(ctx));
    STOPPED.store(false, Ordering::Relaxed);
    arm(ctx);
}

fn arm(ctx: &Context) {
    arm_in(
        ctx,
        Duration::from_millis(config::sweep_interval().max(1) as u64),
    );
}

fn arm_in(ctx: &Context, period: Duration) {
    TIMER.store(ctx.create_timer(period, tick, ()), Ordering::Relaxed);
    TIMER_ARMED.store(true, Ordering::Relaxed);
    *armed_at() = Some((Instant::now(), period));
}

/// Stops the armed timer, if any.
fn disarm(ctx: &Context) {
    if TIMER_ARMED.swap(false, Ordering::Relaxed) {
        // The data is a zero-sized `()`; nothing is freed wrongly.
        let _ = ctx.stop_timer::<()>(TIMER.load(Ordering::Relaxed));
    }
}

/// When the timer was last armed, and for how long, by the monotonic clock.
fn armed_at() -> MutexGuard<'static, Option<(Instant, Duration)>> {
    static ARMED_AT: Mutex<Option<(Instant, Duration)>> = Mutex::new(None);
    ARMED_AT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The server's cron (every 1/hz s, by its monotonic clock): module timers are scheduled by the
/// wall clock (Redis 7.0 and 7.2 alike), so after the wall clock steps back the timer would fire
/// that much late. A timer overdue by more than a second is replaced.
pub fn watchdog(ctx: &Context) {
    if STOPPED.load(Ordering::Relaxed) {
        return;
    }
    if !TIMER_ARMED.load(Ordering::Relaxed) {
        // A run left it to the watchdog (see `tick`).
        return arm_in(ctx, BACKLOG_PAUSE);
    }
    let overdue = armed_at().is_some_and(|(at, period)| at.elapsed() > period + TIMER_GRACE);
    if overdue {
        guard::log_warning(
            "presence: the sweep timer is overdue (the wall clock stepped back?): armed again",
        );
        disarm(ctx);
        arm_in(ctx, BACKLOG_PAUSE);
    }
}

fn tick(ctx: &Context, _: ()) {
    TIMER_ARMED.store(false, Ordering::Relaxed);
    let wall_at_start = crate::clock::wall();
    // The timer is armed again whatever the run did: a run that panicked is logged and retried.
    let backlog = guard::callback("the sweep", || {
        // On every node: a replica's directory follows its replication stream here.
        listings::refresh_directory(ctx);
        if !may_write(ctx) {
            return false;
        }
        send_clock(ctx);
        run(ctx, config::sweep_budget(), Some(RUN_TIME_CAP)).backlog
    });
    if crate::clock::wall() < wall_at_start {
        // The wall clock stepped back during the run. The server's timer loop fires every timer
        // due by the time it read before the run, so a timer armed now would fire at once, again
        // and again, until the wall clock is back there: the watchdog arms it instead.
        return;
    }
    if backlog == Some(true) {
        return arm_in(ctx, BACKLOG_PAUSE);
    }
    arm(ctx);
}

/// Every second, a master sends its module time to its replicas (see `clock`).
fn send_clock(ctx: &Context) {
    static LAST_SENT: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST_SENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if last.is_some_and(|at| at.elapsed() < CLOCK_PERIOD) {
        return;
    }
    *last = Some(Instant::now());
    let now = store::now().to_string();
    ctx.replicate("PRESENCE.CLOCK", &[now.as_bytes()]);
}

/// Stops the timer for good (the server is shutting down).
pub fn stop(ctx: &Context) {
    STOPPED.store(true, Ordering::Relaxed);
    disarm(ctx);
    module_ctx().take();
}

/// `sweep-interval` changed: replace the armed timer so the new period applies now, not after a
/// possibly long old one. Runs on the main thread, from CONFIG SET.
pub fn interval_changed() {
    let Some(ctx) = module_ctx().as_ref().map(DetachedContext::context) else {
        return; // still loading: `start` arms the timer with the value set
    };
    disarm(&ctx);
    arm(&ctx);
}

/// One sweep: removes devices past their deadline and announces the changes, within `budget`
/// devices and, when given, `time_cap`.
pub fn run(ctx: &Context, budget: usize, time_cap: Option<Duration>) -> Outcome {
    let started = Instant::now();
    let limits = Limits {
        budget,
        until: time_cap.map(|cap| started + cap),
        reconcile: RECONCILE_BUDGET,
    };
    let now = store::now();
    let outcome = schedule().run(
        &mut ServerKeyspace(ctx),
        &HINTS,
        now,
        config::away_after(),
        &limits,
    );
    stats::SWEEP_RUNS.add(1);
    stats::SWEEP_LAST_US.set(started.elapsed().as_micros() as i64);
    stats::SWEEP_LAG_MS.set(HINTS.lag(now));
    outcome
}

/// The keyspace of the server the sweep runs in. A slot being imported is not this node's yet
/// (see `migration`): it looks empty until the import completes.
struct ServerKeyspace<'a>(&'a Context);

impl Keyspace for ServerKeyspace<'_> {
    fn due_entries(&mut self, slot: u16, until: Millis, limit: usize) -> Vec<DueEntry> {
        if migration::importing(slot) {
            return Vec::new();
        }
        index::due_entries(self.0, slot, until, limit)
    }

    fn next_due(&mut self, slot: u16) -> Option<Millis> {
        if migration::importing(slot) {
            return None;
        }
        index::next_due(self.0, slot)
    }

    fn idle_candidates(
        &mut self,
        slot: u16,
        after: Option<&Position>,
        until: Millis,
        limit: usize,
    ) -> Vec<Position> {
        if migration::importing(slot) {
            return Vec::new();
        }
        listings::idle_candidates(self.0, slot, after, until, limit)
    }

    fn settle_entry(&mut self, slot: u16, entry: DueEntry, now: Millis, max: usize) -> usize {
        let ctx = self.0;
        match entry {
            DueEntry::Device(member, at) => {
                // A member naming a user of another slot is not one of this index's.
                let gone = keys::parse_due_member(&member)
                    .filter(|(user, _)| keys::slot(user) == slot)
                    .map_or(0, |(user, device)| {
                        repair::settle_due_device(ctx, slot, user, device, at, max)
                    });
                // Gone with its device, unless no record explained it.
                if gone == 0 {
                    index::drop_entry_if_due(ctx, &keys::due_key(slot), &member, Some(now));
                }
                gone
            }
            DueEntry::Timer(user) => {
                let gone = self.settle_user(&user, max);
                index::drop_entry_if_due(ctx, &keys::timers_key(slot), &user, Some(now));
                gone
            }
        }
    }

    /// Removes a user's devices that are past their deadline (at most `max`), as every write
    /// does first.
    fn settle_user(&mut self, user: &[u8], max: usize) -> usize {
        match UserWrite::open_settling_at_most(self.0, user, max) {
            Ok(write) => {
                let gone = write.timed_out;
                write.commit(self.0);
                gone
            }
            Err(_) => 0,
        }
    }

    fn reconcile(&mut self, now: Millis, budget: usize, until: Option<Instant>) {
        reconcile::run(self.0, now, budget, until);
    }
}
