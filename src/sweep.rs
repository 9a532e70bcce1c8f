//! The sweep: a timer that removes devices whose deadline passed, ends manual statuses and grace
//! periods when their time comes, moves idle users to away, and announces it all.
//!
//! Users go idle `away-after` after their last activity, which is their score in the slot's
//! listing of everyone: the sweep walks each slot's listing upwards from where it last stopped
//! (a position kept in memory), so a user is checked once per stretch of inactivity and needs no
//! timer entry of their own for it.
//!
//! Due devices are found through the per-slot due indexes (devices scored by their deadline),
//! never by scanning users. To skip the slots with nothing due without opening 16384
//! keys per run, the module keeps in memory, per slot, a deadline at or before the slot's earliest
//! one: writes lower it, the sweep sets it to the index's true first score after visiting the slot.
//! The memory copy is only a hint: after loading, on promotion and after a flush every slot is
//! checked again, and each run re-reads a few slots in rotation, so entries that arrive by other
//! ways (a replication stream, a restored key) are found within a bounded time.

use crate::keys::SLOTS;
use crate::listing::Position;
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

static NEXT_DUE: [AtomicI64; SLOTS] = [const { AtomicI64::new(UNKNOWN) }; SLOTS];
static CURSOR: AtomicUsize = AtomicUsize::new(0);
/// The armed timer, so that a new `sweep-interval` can replace it at once.
static TIMER: AtomicU64 = AtomicU64::new(0);
static TIMER_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The module is being unloaded or the server shut down: the timer stays stopped.
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// A context of the module's own, for re-arming the timer from a configuration change.
static MODULE_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// A write gave a user of `slot` a deadline.
pub fn note_deadline(slot: u16, deadline: Millis) {
    NEXT_DUE[usize::from(slot) % SLOTS].fetch_min(deadline, Ordering::Relaxed);
}

/// Per slot, the position in the slot's listing of everyone up to which users were checked for
/// going idle (`None`: from the start). Activity only moves a user up the listing, past this
/// position, so each user is checked once per stretch of inactivity.
fn idle_checked() -> std::sync::MutexGuard<'static, Vec<Option<Position>>> {
    static CHECKED: std::sync::LazyLock<std::sync::Mutex<Vec<Option<Position>>>> =
        std::sync::LazyLock::new(|| std::sync::Mutex::new(vec![None; SLOTS]));
    CHECKED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the sweep read the slot's indexes on its next run, and check all its listed users for
/// idleness again (they arrived by another way than this node's writes: a restored key).
pub fn recheck(slot: u16) {
    let slot = usize::from(slot) & (SLOTS - 1);
    NEXT_DUE[slot].store(UNKNOWN, Ordering::Relaxed);
    idle_checked()[slot] = None;
}

/// Forget every hint: the next run looks at every slot.
pub fn recheck_all() {
    for hint in &NEXT_DUE {
        hint.store(UNKNOWN, Ordering::Relaxed);
    }
    idle_checked()
        .iter_mut()
        .for_each(|checked| *checked = None);
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

/// When the timer was last armed, and for how long, by the monotonic clock.
fn armed_at() -> std::sync::MutexGuard<'static, Option<(Instant, Duration)>> {
    static ARMED_AT: std::sync::Mutex<Option<(Instant, Duration)>> = std::sync::Mutex::new(None);
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
    if overdue && TIMER_ARMED.swap(false, Ordering::Relaxed) {
        crate::guard::log_warning(
            "presence: the sweep timer is overdue (the wall clock stepped back?): armed again",
        );
        // The data is a zero-sized `()`; nothing is freed wrongly.
        let _ = ctx.stop_timer::<()>(TIMER.load(Ordering::Relaxed));
        arm_in(ctx, BACKLOG_PAUSE);
    }
}

/// How late the timer may be before the watchdog replaces it.
const TIMER_GRACE: Duration = Duration::from_secs(1);

fn tick(ctx: &Context, _: ()) {
    TIMER_ARMED.store(false, Ordering::Relaxed);
    let wall_at_start = crate::clock::wall();
    // The timer is armed again whatever the run did: a run that panicked is logged and retried.
    let backlog = crate::guard::callback("the sweep", || {
        // On every node: a replica's directory follows its replication stream here.
        store::refresh_directory(ctx);
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
    static LAST_SENT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
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
    if TIMER_ARMED.swap(false, Ordering::Relaxed) {
        // The data is a zero-sized `()`; nothing is freed wrongly.
        let _ = ctx.stop_timer::<()>(TIMER.load(Ordering::Relaxed));
    }
    let own = MODULE_CTX.swap(std::ptr::null_mut(), Ordering::Relaxed);
    if !own.is_null() {
        // SAFETY: the detached context made in `start`, freed once (the pointer is taken out).
        unsafe { raw::RedisModule_FreeThreadSafeContext.unwrap_unchecked()(own) };
    }
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

/// What a run did.
pub struct Outcome {
    pub removed: usize,
    /// It stopped at its budget or time cap with devices still due.
    pub backlog: bool,
}

/// How much one run may do: `budget` devices (each user visited counts at least one) and, for the
/// timer, a time cap.
struct Limits {
    budget: usize,
    until: Option<Instant>,
}

impl Limits {
    fn reached(&self, spent: usize) -> bool {
        spent >= self.budget || self.until.is_some_and(|until| Instant::now() >= until)
    }
}

/// One sweep: removes devices past their deadline and announces the changes, within `budget`
/// devices and, when given, `time_cap`.
pub fn run(ctx: &Context, budget: usize, time_cap: Option<Duration>) -> Outcome {
    let started = Instant::now();
    let limits = Limits {
        budget,
        until: time_cap.map(|cap| started + cap),
    };
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
        let (work, gone, done) = sweep_slot(ctx, slot as u16, now, &limits, spent);
        spent += work;
        removed += gone;
        if !done {
            stopped_at = Some(slot);
            break;
        }
    }
    if stopped_at.is_none() {
        crate::reconcile::run(ctx, now, RECONCILE_BUDGET, limits.until);
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
        .map(|due| now.saturating_sub(due))
        .max()
        .unwrap_or(0);
    stats::SWEEP_RUNS.add(1);
    stats::SWEEP_LAST_US.set(started.elapsed().as_micros() as i64);
    stats::SWEEP_LAG_MS.set(lag);
    Outcome {
        removed,
        backlog: stopped_at.is_some(),
    }
}

/// Settles the users of one slot's due devices, from `spent` work done so far in the run.
/// Returns (work spent here, devices removed, whether the slot has nothing due left).
fn sweep_slot(
    ctx: &Context,
    slot: u16,
    now: Millis,
    limits: &Limits,
    mut spent: usize,
) -> (usize, usize, bool) {
    let start = spent;
    let mut removed = 0;
    loop {
        if limits.reached(spent) {
            // The hint stays at or before what is still due.
            return (spent - start, removed, false);
        }
        let room = limits.budget.saturating_sub(spent);
        let due = store::due_entries(ctx, slot, now, BATCH.min(room));
        if due.is_empty() {
            break;
        }
        for entry in due {
            // An entry no record explains goes too, so the loop always moves on.
            let gone = match entry {
                store::DueEntry::Device(member, at) => {
                    // A member naming a user of another slot is not one of this index's.
                    let device = keys::parse_due_member(&member)
                        .filter(|(user, _)| keys::slot(user) == slot);
                    let gone = match device {
                        Some((user, device)) => store::settle_due_device(
                            ctx,
                            slot,
                            user,
                            device,
                            at,
                            room_left(limits, spent),
                        ),
                        None => 0,
                    };
                    // Gone with its device, unless no record explained it.
                    if gone == 0 {
                        store::drop_entry_if_due(ctx, &keys::due_key(slot), &member, Some(now));
                    }
                    gone
                }
                store::DueEntry::Timer(user) => {
                    let gone = settle_user(ctx, &user, room_left(limits, spent));
                    store::drop_entry_if_due(ctx, &keys::timers_key(slot), &user, Some(now));
                    gone
                }
            };
            spent += gone.max(1);
            removed += gone;
            if limits.reached(spent) {
                return (spent - start, removed, false);
            }
        }
    }
    let idle_next = match check_idle(ctx, slot, now, limits, &mut spent, &mut removed) {
        Some(next) => next,
        None => return (spent - start, removed, false),
    };
    let next = store::next_due(ctx, slot)
        .into_iter()
        .chain(idle_next)
        .min();
    NEXT_DUE[usize::from(slot)].store(next.unwrap_or(NOTHING), Ordering::Relaxed);
    (spent - start, removed, true)
}

/// Settles the slot's listed users whose last activity is `away-after` old or more and who were
/// not checked since they were last active (they go idle, unless a manual status holds), adding
/// to `spent` and `removed`. Returns `None` when the run's limits stopped it, else when the next
/// listed user of the slot may go idle (`Some(None)`: none, or auto-away is off).
fn check_idle(
    ctx: &Context,
    slot: u16,
    now: Millis,
    limits: &Limits,
    spent: &mut usize,
    removed: &mut usize,
) -> Option<Option<Millis>> {
    let away_after = config::away_after();
    if away_after <= 0 {
        return Some(None);
    }
    let until = now.saturating_sub(away_after);
    loop {
        if limits.reached(*spent) {
            return None;
        }
        let room = limits.budget.saturating_sub(*spent);
        let from = idle_checked()[usize::from(slot)].clone();
        let batch = store::idle_candidates(ctx, slot, from.as_ref(), until, BATCH.min(room));
        if batch.is_empty() {
            break;
        }
        for user in batch {
            let gone = settle_user(ctx, &user.user, room_left(limits, *spent));
            idle_checked()[usize::from(slot)] = Some(user);
            *spent += gone.max(1);
            *removed += gone;
            if limits.reached(*spent) {
                return None;
            }
        }
    }
    let from = idle_checked()[usize::from(slot)].clone();
    Some(
        store::idle_candidates(ctx, slot, from.as_ref(), Millis::MAX, 1)
            .first()
            .map(|next| next.last_active.saturating_add(away_after)),
    )
}

/// What is left of the run's budget after `spent` (at least one, so each step moves on).
fn room_left(limits: &Limits, spent: usize) -> usize {
    limits.budget.saturating_sub(spent).max(1)
}

/// Removes a user's devices that are past their deadline (at most `max`), as every write does
/// first.
fn settle_user(ctx: &Context, user: &[u8], max: usize) -> usize {
    match store::UserWrite::open_settling_at_most(ctx, user, max) {
        Ok(write) => {
            let gone = write.timed_out;
            write.commit(ctx);
            gone
        }
        Err(_) => 0,
    }
}
