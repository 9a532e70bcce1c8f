//! Per slot, a hint of when the sweep next has something to do there: at or before the earliest
//! deadline, timer or idle moment in the slot. Writes lower it ([`note`]); the sweep sets it to
//! what it found after visiting the slot. It is only a hint: the sweep re-reads slots in rotation
//! whatever it says, and forgets it when the data changed by other ways.

use crate::keys::SLOTS;
use crate::model::Millis;
use std::sync::atomic::{AtomicI64, Ordering};

/// "Unknown: look at this slot on the next run."
const UNKNOWN: Millis = Millis::MIN;
/// "Nothing registered in this slot."
const NOTHING: Millis = Millis::MAX;

/// The hints of every slot.
pub struct Hints([AtomicI64; SLOTS]);

/// The hints the module's writes and its sweep share.
pub static HINTS: Hints = Hints::new();

impl Hints {
    pub const fn new() -> Hints {
        Hints([const { AtomicI64::new(UNKNOWN) }; SLOTS])
    }

    /// Something in `slot` is due at `at`.
    pub fn note(&self, slot: u16, at: Millis) {
        self.0[usize::from(slot) % SLOTS].fetch_min(at, Ordering::Relaxed);
    }

    /// Whether the sweep may skip `slot` at `now`: nothing in it is due by then.
    pub fn nothing_due(&self, slot: u16, now: Millis) -> bool {
        self.0[usize::from(slot) % SLOTS].load(Ordering::Relaxed) > now
    }

    /// The sweep visited `slot`: the next thing due there is at `next` (`None`: nothing).
    pub fn visited(&self, slot: u16, next: Option<Millis>) {
        self.0[usize::from(slot) % SLOTS].store(next.unwrap_or(NOTHING), Ordering::Relaxed);
    }

    /// Forgets the hint of `slot`: the next run looks at it.
    pub fn forget(&self, slot: u16) {
        self.0[usize::from(slot) % SLOTS].store(UNKNOWN, Ordering::Relaxed);
    }

    /// Forgets every hint: the next run looks at every slot.
    pub fn forget_all(&self) {
        for hint in &self.0 {
            hint.store(UNKNOWN, Ordering::Relaxed);
        }
    }

    /// How long the most overdue known hint has been due at `now` (0: none is).
    pub fn lag(&self, now: Millis) -> Millis {
        self.0
            .iter()
            .map(|hint| hint.load(Ordering::Relaxed))
            .filter(|&due| due != UNKNOWN && due <= now)
            .map(|due| now.saturating_sub(due))
            .max()
            .unwrap_or(0)
    }
}

/// A write gave something in `slot` a deadline at `at`.
pub fn note(slot: u16, at: Millis) {
    HINTS.note(slot, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_is_the_earliest_noted_until_the_sweep_visits() {
        let hints = Box::new(Hints::new());
        assert!(!hints.nothing_due(7, 0), "unknown slots are looked at");
        hints.visited(7, None);
        assert!(hints.nothing_due(7, Millis::MAX - 1));
        hints.note(7, 500);
        hints.note(7, 900);
        assert!(hints.nothing_due(7, 499));
        assert!(!hints.nothing_due(7, 500));
        assert_eq!(hints.lag(800), 300);
        hints.visited(7, Some(2_000));
        assert!(hints.nothing_due(7, 1_999));
        hints.forget_all();
        assert!(!hints.nothing_due(7, 0));
        assert_eq!(hints.lag(800), 0, "unknown hints are no lag");
    }
}
