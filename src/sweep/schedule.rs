//! Which slots a sweep run visits and in what order, within its budget and time: the sweep's
//! scheduling, kept apart from the keys behind the [`Keyspace`] trait so that it is unit-tested
//! without a server.

use crate::deadlines::Hints;
use crate::keys::SLOTS;
use crate::listing::Position;
use crate::model::{Millis, Span};
use crate::store::index::DueEntry;
use std::time::Instant;

/// Slots re-read by every run whatever their hint says (a full rotation every 256 runs).
pub const REFRESH_PER_RUN: usize = 64;
/// Entries taken from one slot's indexes per read.
const BATCH: usize = 128;

/// What the sweep reads from the keys and does to them.
pub trait Keyspace {
    /// Up to `limit` entries of the slot's due index, then of its timers set, due by `until`.
    fn due_entries(&mut self, slot: u16, until: Millis, limit: usize) -> Vec<DueEntry>;
    /// The earliest time in the slot's due index and timers set.
    fn next_due(&mut self, slot: u16) -> Option<Millis>;
    /// Up to `limit` users of the slot's listing of everyone after `after`, least recently active
    /// first, whose last activity is at or before `until`.
    fn idle_candidates(
        &mut self,
        slot: u16,
        after: Option<&Position>,
        until: Millis,
        limit: usize,
    ) -> Vec<Position>;
    /// Settles what the due `entry` stands for, removing at most `max` devices, and takes the
    /// entry out of its index if it is still due at `now`. The devices removed.
    fn settle_entry(&mut self, slot: u16, entry: DueEntry, now: Millis, max: usize) -> usize;
    /// Settles `user` (they may have gone idle), removing at most `max` devices.
    fn settle_user(&mut self, user: &[u8], max: usize) -> usize;
    /// Does up to `budget` units of reconciliation, stopping at `until`.
    fn reconcile(&mut self, now: Millis, budget: usize, until: Option<Instant>);
}

/// How much one run may do: `budget` devices (each user visited counts at least one) and, for the
/// timer, a time limit.
pub struct Limits {
    pub budget: usize,
    pub until: Option<Instant>,
    /// Units of reconciliation the run may do after its due work, within its time.
    pub reconcile: usize,
}

impl Limits {
    fn reached(&self, spent: usize) -> bool {
        spent >= self.budget || self.until.is_some_and(|until| Instant::now() >= until)
    }

    /// What is left of the budget after `spent` (at least one, so each step moves on).
    fn room_left(&self, spent: usize) -> usize {
        self.budget.saturating_sub(spent).max(1)
    }
}

/// What a run did.
pub struct Outcome {
    pub removed: usize,
    /// It stopped at its budget or time limit with work still due.
    pub backlog: bool,
}

/// Where the sweep is, between runs.
pub struct Schedule {
    /// The slot the next run starts at.
    cursor: usize,
    /// Per slot, the position in the slot's listing of everyone up to which users were checked
    /// for going idle (`None`: from the start). Activity only moves a user up the listing, past
    /// this position, so each user is checked once per stretch of inactivity.
    idle_checked: Vec<Option<Position>>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            cursor: 0,
            idle_checked: vec![None; SLOTS],
        }
    }
}

impl Schedule {
    /// Checks every listed user of `slot` for idleness again.
    pub fn recheck_idle(&mut self, slot: u16) {
        if let Some(checked) = self.idle_checked.get_mut(usize::from(slot)) {
            *checked = None;
        }
    }

    pub fn recheck_all_idle(&mut self) {
        self.idle_checked.iter_mut().for_each(|c| *c = None);
    }

    /// One run at `now`: visits the slots from the cursor on (those whose hint says something may
    /// be due, and `REFRESH_PER_RUN` whatever their hint), then reconciles if it got through.
    /// `away_after`: how long without activity makes a user idle (0: never).
    pub fn run(
        &mut self,
        keyspace: &mut impl Keyspace,
        hints: &Hints,
        now: Millis,
        away_after: Span,
        limits: &Limits,
    ) -> Outcome {
        let first = self.cursor % SLOTS;
        let mut spent = 0usize;
        let mut removed = 0usize;
        let mut stopped_at = None;
        for i in 0..SLOTS {
            let slot = ((first + i) % SLOTS) as u16;
            if i >= REFRESH_PER_RUN && hints.nothing_due(slot, now) {
                continue;
            }
            let visit = self.visit(keyspace, slot, now, away_after, limits, spent);
            spent += visit.spent;
            removed += visit.removed;
            match visit.next {
                Some(next) => hints.visited(slot, next),
                None => {
                    // The hint stays at or before what is still due.
                    stopped_at = Some(usize::from(slot));
                    break;
                }
            }
        }
        if stopped_at.is_none() {
            keyspace.reconcile(now, limits.reconcile, limits.until);
        }
        // After a backlog, start where this run stopped, so no slot waits behind others.
        self.cursor = stopped_at.unwrap_or((first + REFRESH_PER_RUN) % SLOTS);
        Outcome {
            removed,
            backlog: stopped_at.is_some(),
        }
    }

    /// Settles the users of one slot's due entries, then its idle users, from `spent` work done so
    /// far in the run.
    fn visit(
        &mut self,
        keyspace: &mut impl Keyspace,
        slot: u16,
        now: Millis,
        away_after: Span,
        limits: &Limits,
        mut spent: usize,
    ) -> Visit {
        let start = spent;
        let mut removed = 0;
        let stopped = |spent: usize, removed: usize| Visit {
            spent: spent - start,
            removed,
            next: None,
        };
        loop {
            if limits.reached(spent) {
                return stopped(spent, removed);
            }
            let room = limits.budget.saturating_sub(spent);
            let due = keyspace.due_entries(slot, now, BATCH.min(room));
            if due.is_empty() {
                break;
            }
            for entry in due {
                // Each entry leaves its index (with its device, or because nothing explains it),
                // so the loop always moves on.
                let gone = keyspace.settle_entry(slot, entry, now, limits.room_left(spent));
                spent += gone.max(1);
                removed += gone;
                if limits.reached(spent) {
                    return stopped(spent, removed);
                }
            }
        }
        let idle_next = if away_after.is_positive() {
            let until = away_after.before(now);
            loop {
                if limits.reached(spent) {
                    return stopped(spent, removed);
                }
                let room = limits.budget.saturating_sub(spent);
                let from = self.idle_checked[usize::from(slot)].clone();
                let batch = keyspace.idle_candidates(slot, from.as_ref(), until, BATCH.min(room));
                if batch.is_empty() {
                    break;
                }
                for user in batch {
                    let gone = keyspace.settle_user(&user.user, limits.room_left(spent));
                    self.idle_checked[usize::from(slot)] = Some(user);
                    spent += gone.max(1);
                    removed += gone;
                    if limits.reached(spent) {
                        return stopped(spent, removed);
                    }
                }
            }
            let from = self.idle_checked[usize::from(slot)].clone();
            keyspace
                .idle_candidates(slot, from.as_ref(), Millis::MAX, 1)
                .first()
                .map(|next| away_after.after(next.last_active))
        } else {
            None
        };
        let next = keyspace.next_due(slot).into_iter().chain(idle_next).min();
        Visit {
            spent: spent - start,
            removed,
            next: Some(next),
        }
    }
}

/// What visiting a slot did.
struct Visit {
    spent: usize,
    removed: usize,
    /// When something is next due in the slot (`Some(None)`: nothing); `None` when the run's
    /// limits stopped the visit.
    next: Option<Option<Millis>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Slots of due devices (deadline, member) and listed users (last activity, user), in memory.
    #[derive(Default)]
    struct Keys {
        due: BTreeMap<u16, Vec<(Millis, Vec<u8>)>>,
        listed: BTreeMap<u16, Vec<Position>>,
        reads: Vec<u16>,
        settled_users: Vec<Vec<u8>>,
        reconciled: usize,
    }

    impl Keyspace for Keys {
        fn due_entries(&mut self, slot: u16, until: Millis, limit: usize) -> Vec<DueEntry> {
            self.reads.push(slot);
            let mut entries = self.due.get(&slot).cloned().unwrap_or_default();
            entries.sort();
            entries
                .into_iter()
                .filter(|(at, _)| *at <= until)
                .take(limit)
                .map(|(at, member)| DueEntry::Device(member, at))
                .collect()
        }
        fn next_due(&mut self, slot: u16) -> Option<Millis> {
            self.due.get(&slot)?.iter().map(|(at, _)| *at).min()
        }
        fn idle_candidates(
            &mut self,
            slot: u16,
            after: Option<&Position>,
            until: Millis,
            limit: usize,
        ) -> Vec<Position> {
            let mut users = self.listed.get(&slot).cloned().unwrap_or_default();
            users.sort_by(|a, b| (a.last_active, &a.user).cmp(&(b.last_active, &b.user)));
            users
                .into_iter()
                .filter(|u| {
                    after.is_none_or(|a| (u.last_active, &u.user) > (a.last_active, &a.user))
                })
                .filter(|u| u.last_active <= until)
                .take(limit)
                .collect()
        }
        fn settle_entry(&mut self, slot: u16, entry: DueEntry, _: Millis, _: usize) -> usize {
            let DueEntry::Device(member, _) = entry else {
                return 0;
            };
            let entries = self.due.entry(slot).or_default();
            entries.retain(|(_, m)| *m != member);
            1
        }
        fn settle_user(&mut self, user: &[u8], _: usize) -> usize {
            self.settled_users.push(user.to_vec());
            0
        }
        fn reconcile(&mut self, _: Millis, budget: usize, _: Option<Instant>) {
            self.reconciled += budget;
        }
    }

    fn limits(budget: usize) -> Limits {
        Limits {
            budget,
            until: None,
            reconcile: 5,
        }
    }

    fn hints() -> Box<Hints> {
        Box::new(Hints::new())
    }

    #[test]
    fn a_run_removes_what_is_due_and_then_reconciles() {
        let mut keys = Keys::default();
        keys.due
            .insert(3, vec![(100, b"a".to_vec()), (900, b"b".to_vec())]);
        keys.due.insert(4000, vec![(50, b"c".to_vec())]);
        let (hints, mut schedule) = (hints(), Schedule::default());
        let outcome = schedule.run(&mut keys, &hints, 500, Span(0), &limits(1000));
        assert_eq!(outcome.removed, 2);
        assert!(!outcome.backlog);
        assert_eq!(
            keys.due[&3],
            vec![(900, b"b".to_vec())],
            "not due yet: kept"
        );
        assert_eq!(keys.reconciled, 5);
        assert!(hints.nothing_due(3, 899) && !hints.nothing_due(3, 900));
        assert!(
            hints.nothing_due(4000, Millis::MAX - 1),
            "nothing left in the slot"
        );
    }

    #[test]
    fn a_backlog_resumes_where_the_last_run_stopped_and_skips_reconciling() {
        let mut keys = Keys::default();
        for slot in [10u16, 11, 12] {
            let due = (0..4).map(|i| (i, vec![b'x', i as u8])).collect();
            keys.due.insert(slot, due);
        }
        let (hints, mut schedule) = (hints(), Schedule::default());
        schedule.cursor = 10;
        let first = schedule.run(&mut keys, &hints, 100, Span(0), &limits(6));
        assert_eq!((first.removed, first.backlog), (6, true));
        assert_eq!(
            keys.reconciled, 0,
            "no reconciliation while a backlog remains"
        );
        assert_eq!(keys.due[&11].len(), 2);
        keys.reads.clear();
        let second = schedule.run(&mut keys, &hints, 100, Span(0), &limits(7));
        assert_eq!((second.removed, second.backlog), (6, false));
        assert_eq!(
            keys.reads.first(),
            Some(&11),
            "starts at the slot it stopped in"
        );
        assert!(keys.due.values().all(Vec::is_empty));
    }

    #[test]
    fn slots_whose_hint_says_nothing_is_due_are_read_only_in_rotation() {
        let mut keys = Keys::default();
        let (hints, mut schedule) = (hints(), Schedule::default());
        schedule.run(&mut keys, &hints, 100, Span(0), &limits(1000));
        assert_eq!(
            keys.reads.len(),
            SLOTS,
            "unknown hints: every slot is read once"
        );
        keys.reads.clear();
        schedule.run(&mut keys, &hints, 100, Span(0), &limits(1000));
        assert_eq!(keys.reads.len(), REFRESH_PER_RUN, "then only the rotation");
        hints.note(9000, 150);
        keys.reads.clear();
        schedule.run(&mut keys, &hints, 200, Span(0), &limits(1000));
        assert!(
            keys.reads.contains(&9000),
            "a noted deadline brings its slot in"
        );
        assert_eq!(keys.reads.len(), REFRESH_PER_RUN + 1);
    }

    #[test]
    fn each_user_is_checked_for_idleness_once_per_stretch_of_inactivity() {
        let mut keys = Keys::default();
        let at = |last_active, user: &str| Position {
            last_active,
            user: user.as_bytes().to_vec(),
        };
        keys.listed
            .insert(5, vec![at(100, "a"), at(200, "b"), at(900, "c")]);
        let (hints, mut schedule) = (hints(), Schedule::default());
        schedule.run(&mut keys, &hints, 700, Span(500), &limits(1000));
        assert_eq!(keys.settled_users, vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(
            hints.nothing_due(5, 1399) && !hints.nothing_due(5, 1400),
            "the next user may go idle at 900 + 500"
        );
        keys.settled_users.clear();
        schedule.run(&mut keys, &hints, 1000, Span(500), &limits(1000));
        assert!(keys.settled_users.is_empty(), "not checked again");
        keys.listed
            .insert(5, vec![at(100, "a"), at(950, "b"), at(900, "c")]);
        schedule.run(&mut keys, &hints, 1500, Span(500), &limits(1000));
        assert_eq!(keys.settled_users, vec![b"c".to_vec(), b"b".to_vec()]);
    }
}
