//! The module's time: the server's wall clock, made safe to judge liveness by.
//!
//! Deadlines, last activity and every timestamp the module stores are wall-clock milliseconds, so
//! they mean the same on replicas, after restarts and to clients. But wall clocks step (NTP
//! corrections, VM migrations, a suspended host): judged by a clock that jumped an hour ahead,
//! every device would look an hour late. So the module reads the wall clock through
//! [`ModuleClock`], which watches it against the monotonic clock:
//!
//! - a step of more than [`STEP_TOLERANCE`] either way is absorbed: module time goes on at the
//!   monotonic clock's pace from where it was, then converges to the wall clock at 1/16 of
//!   elapsed time (a step of one hour is caught up in 16 hours; meanwhile TTLs and idleness run
//!   about 6% faster after a step forward, slower after a step back). Module time never goes
//!   backwards. A step larger than [`MAX_HELD`] is taken at once (a clock that was simply wrong).
//! - a replica judges by its master's clock, not its own: the master sends its module time to its
//!   replicas every second (`PRESENCE.CLOCK`, in the replication stream), and the replica reads
//!   at its own clock plus the last difference seen. A promoted replica starts from there and
//!   converges to its own clock as after a step, so skew between the two machines announces no
//!   false timeouts.

use crate::model::Millis;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Differences between the wall and the monotonic clock up to this much between two readings
/// are the wall clock's own (NTP slews it by at most 0.05%); more is a step.
pub const STEP_TOLERANCE: Millis = 1000;
/// The largest step that is absorbed; beyond it the wall clock is taken as it is.
pub const MAX_HELD: Millis = 24 * 3600 * 1000;
/// Module time converges to the wall clock by 1 ms per this many elapsed.
const SLEW_DIVISOR: Millis = 16;

/// Module time from readings of the wall and the monotonic clock. Pure: the caller reads them.
#[derive(Clone, Debug, Default)]
pub struct ModuleClock {
    /// The previous readings, once there is one.
    last: Option<(Millis, Millis)>,
    /// Module time minus wall time.
    offset: Millis,
    /// The latest module time given.
    latest: Millis,
}

/// What a reading found besides the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    None,
    /// The wall clock stepped by this much (positive: forward) and module time absorbed it.
    Absorbed(Millis),
    /// The wall clock stepped by more than [`MAX_HELD`]: module time took it.
    Taken(Millis),
}

impl ModuleClock {
    /// Module time at wall time `wall` and monotonic time `mono` (both in ms).
    pub fn read(&mut self, wall: Millis, mono: Millis) -> (Millis, Step) {
        let mut step = Step::None;
        if let Some((last_wall, last_mono)) = self.last {
            let elapsed = mono.saturating_sub(last_mono).max(0);
            let jump = wall.saturating_sub(last_wall).saturating_sub(elapsed);
            if jump.unsigned_abs() > STEP_TOLERANCE.unsigned_abs() {
                self.offset = self.offset.saturating_sub(jump);
                step = Step::Absorbed(jump);
            }
            if self.offset.abs() > MAX_HELD {
                self.offset = 0;
                step = Step::Taken(jump);
            }
            let slew = elapsed / SLEW_DIVISOR;
            self.offset = if self.offset > 0 {
                self.offset.saturating_sub(slew).max(0)
            } else {
                self.offset.saturating_add(slew).min(0)
            };
        }
        self.last = Some((wall, mono));
        let time = wall.saturating_add(self.offset);
        if !matches!(step, Step::Taken(_)) {
            self.latest = self.latest.max(time);
        } else {
            self.latest = time;
        }
        (self.latest, step)
    }

    /// Module time minus wall time, as of the last reading.
    pub fn offset(&self) -> Millis {
        self.offset
    }

    /// Moves module time by `by` (a promoted replica takes over its master's time), to converge
    /// to the wall clock from there.
    pub fn shift(&mut self, by: Millis) {
        let before = self.offset;
        self.offset = self.offset.saturating_add(by);
        if self.offset.abs() > MAX_HELD {
            self.offset = 0;
        }
        self.latest = self.latest.saturating_add(self.offset - before);
    }
}

struct State {
    clock: ModuleClock,
    /// On a replica: the master's module time minus this server's, as last sent by the master.
    master_skew: Option<Millis>,
    started: Instant,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: std::sync::LazyLock<Mutex<State>> = std::sync::LazyLock::new(|| {
        Mutex::new(State {
            clock: ModuleClock::default(),
            master_skew: None,
            started: Instant::now(),
        })
    });
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This server's wall clock, in milliseconds since the epoch (as it schedules module timers too).
pub fn wall() -> Millis {
    crate::server::milliseconds()
}

/// This server's module time, and what its reading found.
fn local(state: &mut State) -> (Millis, Step) {
    let mono = Millis::try_from(state.started.elapsed().as_millis()).unwrap_or(Millis::MAX);
    let (time, step) = state.clock.read(wall(), mono);
    match step {
        Step::None => {}
        Step::Absorbed(by) => crate::guard::log_warning(&format!(
            "presence: the wall clock stepped by {by} ms; module time goes on from where it was \
             and converges to the wall clock at 1/{SLEW_DIVISOR} of elapsed time"
        )),
        Step::Taken(by) => crate::guard::log_warning(&format!(
            "presence: the wall clock stepped by {by} ms, more than the {MAX_HELD} ms absorbed: \
             module time follows it"
        )),
    }
    (time, step)
}

/// The time the module judges by and stores: see the module's documentation.
pub fn now() -> Millis {
    let mut state = state();
    let (time, _) = local(&mut state);
    time.saturating_add(state.master_skew.unwrap_or(0))
}

/// The master's module time arrived (`PRESENCE.CLOCK` on a replica).
pub fn master_time(master: Millis) {
    let mut state = state();
    let (time, _) = local(&mut state);
    // Within the tolerance it is the stream's delay (a timer's writes may wait for the master's
    // next event loop), not a difference of clocks.
    let skew = master.saturating_sub(time);
    state.master_skew = Some(if skew.abs() <= STEP_TOLERANCE {
        0
    } else {
        skew
    });
}

/// Module time minus this server's wall clock (nonzero while a step or a master's clock is being
/// caught up), and on a replica the master's time minus this server's module time.
pub fn offsets() -> (Millis, Option<Millis>) {
    let state = state();
    (state.clock.offset(), state.master_skew)
}

/// This server became a master: it goes on from its master's time and converges to its own.
pub fn promoted() {
    let mut state = state();
    if let Some(skew) = state.master_skew.take() {
        state.clock.shift(skew);
    }
}

/// This server became a replica: until its new master's time arrives it reads its own.
pub fn demoted() {
    state().master_skew = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3600 * 1000;

    /// Reads a clock at each (wall, mono) and returns the module times.
    fn times(clock: &mut ModuleClock, readings: &[(Millis, Millis)]) -> Vec<Millis> {
        readings.iter().map(|&(w, m)| clock.read(w, m).0).collect()
    }

    #[test]
    fn a_steady_clock_is_read_as_it_is() {
        let mut c = ModuleClock::default();
        assert_eq!(
            times(&mut c, &[(1000, 0), (1100, 100), (1150, 149), (1200, 200)]),
            [1000, 1100, 1150, 1200]
        );
        // Small differences are the wall clock's own slewing.
        assert_eq!(c.read(2300, 1000).0, 2300);
    }

    #[test]
    fn a_step_forward_is_absorbed_then_caught_up_slowly() {
        let mut c = ModuleClock::default();
        c.read(10_000, 0);
        let (t, step) = c.read(10_100 + HOUR, 100);
        assert_eq!(step, Step::Absorbed(HOUR));
        // Module time went on at the monotonic pace (plus 1/16 of elapsed catching up).
        assert_eq!(t, 10_100 + 100 / 16);
        // After 16 seconds of monotonic time it has caught up one second of the hour.
        let (t, step) = c.read(26_100 + HOUR, 16_100);
        assert_eq!(step, Step::None);
        assert_eq!(t, 26_100 + 16_100 / 16);
        // Sixteen hours later it is the wall clock again.
        let (t, _) = c.read(10_000 + 17 * HOUR, 17 * HOUR);
        assert_eq!(t, 10_000 + 17 * HOUR);
        assert_eq!(c.offset(), 0);
    }

    #[test]
    fn a_step_back_never_takes_module_time_back() {
        let mut c = ModuleClock::default();
        c.read(HOUR * 5, 0);
        let (t, step) = c.read(HOUR * 4 + 1000, 1000);
        assert_eq!(step, Step::Absorbed(-HOUR));
        assert_eq!(t, HOUR * 5 + 1000 - 1000 / 16);
        let mut last = t;
        for s in 2..1000 {
            let (t, _) = c.read(HOUR * 4 + s * 1000, s * 1000);
            assert!(t > last, "module time must grow");
            last = t;
        }
    }

    #[test]
    fn a_huge_step_is_taken() {
        let mut c = ModuleClock::default();
        c.read(1000, 0);
        let (t, step) = c.read(1100 + 400 * 24 * HOUR, 100);
        assert!(matches!(step, Step::Taken(_)));
        assert_eq!(t, 1100 + 400 * 24 * HOUR);
    }

    #[test]
    fn jitter_below_the_tolerance_never_goes_back() {
        let mut c = ModuleClock::default();
        c.read(5000, 0);
        assert_eq!(c.read(4990, 10).0, 5000);
        assert_eq!(c.read(5030, 20).0, 5030);
    }

    #[test]
    fn a_promoted_replica_converges_from_its_masters_time() {
        let mut c = ModuleClock::default();
        c.read(100_000, 0);
        c.shift(-90_000); // the master was 90 s behind this machine
        assert_eq!(c.read(100_000, 0).0, 10_000);
        let (t, _) = c.read(116_000, 16_000);
        assert_eq!(t, 116_000 - 90_000 + 1000);
    }
}
