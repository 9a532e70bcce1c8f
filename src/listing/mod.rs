//! Online listings: who is online (everyone, or the members of a room), most recently active
//! first, and how many.
//!
//! The listing of everyone is stored per slot (`keys::listing_key`), so every key stays in its
//! user's slot. Answering a node-wide question from 16384 keys, without opening them all, takes
//! knowing what each holds: the node keeps in memory, per non-empty slot, the scores of its
//! members (8 bytes each, no user ids), and their number. That directory is derived from the keys
//! alone. It follows every change to a listing key through keyspace notifications (the module's
//! own writes, the replication stream on a replica, keys restored or deleted by resharding, edits
//! by hand) and is rebuilt from a scan of the keyspace after loading, after a flush and after
//! SWAPDB. So `COUNT` is one lookup, and a `LIST` page, at any depth, finds in memory which slots
//! hold its rows and opens about one key per row.
//!
//! Rooms (scopes included) have no keys of their own: [`rooms`] derives their listings from the
//! records, in memory, and resolves their members through the listing of everyone.

pub mod ordered;
pub mod rooms;

use crate::model::Millis;
use rooms::RoomIndex;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// Most rows a LIST page may ask for, and how many it gives by default.
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

/// One listing's members: the scores of each slot's, lowest first, and how many in all.
#[derive(Debug, Default)]
pub struct Members {
    total: u64,
    per_slot: BTreeMap<u16, Vec<Millis>>,
    /// Each non-empty slot by its highest score: the slots whose newest member is most recent
    /// come last.
    tops: BTreeSet<(Millis, u16)>,
}

impl Members {
    /// Changes the scores of `slot` through `change`, keeping the total and the tops in step.
    fn update(&mut self, slot: u16, change: impl FnOnce(&mut Vec<Millis>)) {
        let scores = self.per_slot.entry(slot).or_default();
        let (old_len, old_top) = (scores.len() as u64, scores.last().copied());
        change(scores);
        let (new_len, new_top) = (scores.len() as u64, scores.last().copied());
        if scores.is_empty() {
            self.per_slot.remove(&slot);
        }
        self.total = (self.total + new_len).saturating_sub(old_len);
        if old_top != new_top {
            if let Some(top) = old_top {
                self.tops.remove(&(top, slot));
            }
            if let Some(top) = new_top {
                self.tops.insert((top, slot));
            }
        }
    }

    /// The slots with members.
    pub fn slots(&self) -> impl Iterator<Item = u16> + '_ {
        self.per_slot.keys().copied()
    }

    /// The scores of a slot's members, lowest first.
    fn scores(&self, slot: u16) -> &[Millis] {
        self.per_slot.get(&slot).map_or(&[], Vec::as_slice)
    }
}

/// The scores of the members of the listing of everyone, per slot.
#[derive(Debug, Default)]
pub struct Directory {
    everyone: Members,
}

impl Directory {
    /// Records the scores (lowest first) that the slot's listing key now holds.
    pub fn set(&mut self, slot: u16, scores: Vec<Millis>) {
        self.everyone.update(slot, |held| *held = scores);
    }

    /// Records that one member of the slot's listing key moved from score `old` to `new`
    /// (`None`: absent), as the module's own writes know it.
    pub fn replace(&mut self, slot: u16, old: Option<Millis>, new: Option<Millis>) {
        if old == new {
            return;
        }
        self.everyone.update(slot, |scores| {
            if let Some(i) = old.and_then(|old| scores.binary_search(&old).ok()) {
                scores.remove(i);
            }
            if let Some(new) = new {
                let i = scores.partition_point(|s| *s < new);
                scores.insert(i, new);
            }
        });
    }

    pub fn count(&self) -> u64 {
        self.everyone.total
    }

    /// The listing's members, if it has any.
    pub fn members(&self) -> Option<&Members> {
        Some(&self.everyone).filter(|m| !m.per_slot.is_empty())
    }

    /// Forgets everything, memory included.
    pub fn clear(&mut self) {
        *self = Directory::default();
    }
}

/// Slots whose listing key of everyone changed by something else than the module's own writes
/// (the replication stream on a replica, AOF loading, RESTORE, DEL, edits by hand): their scores
/// are read again once, before the directory is next used, rather than once per change (a
/// replica applying a stream of ZADDs to one listing key would otherwise read the whole key for
/// each).
fn dirty() -> MutexGuard<'static, BTreeSet<u16>> {
    static DIRTY: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    DIRTY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The slot's listing key changed without telling the directory how.
pub fn mark_dirty(slot: u16) {
    dirty().insert(slot);
}

/// Re-reads the listing keys marked dirty with `scores_of` (slot: the key's scores, lowest
/// first), so the directory is exact again.
pub fn refresh(mut scores_of: impl FnMut(u16) -> Vec<Millis>) {
    let pending = std::mem::take(&mut *dirty());
    for slot in pending {
        let scores = scores_of(slot);
        directory().set(slot, scores);
    }
}

/// Forgets the marks (the directory is rebuilt from the keyspace anyway).
pub fn clear_dirty() {
    *dirty() = BTreeSet::new();
    *stale() = Stale::default();
}

/// The node's directory. Commands, notifications and server events all run on the main thread;
/// the lock only satisfies the type system.
pub fn directory() -> MutexGuard<'static, Directory> {
    static DIRECTORY: LazyLock<Mutex<Directory>> = LazyLock::new(Mutex::default);
    DIRECTORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The node's room index (see [`rooms`]).
pub fn room_index() -> MutexGuard<'static, RoomIndex> {
    static ROOMS: LazyLock<Mutex<RoomIndex>> = LazyLock::new(Mutex::default);
    ROOMS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Most users queued for the room index to read again; past that it is rebuilt whole.
const MAX_STALE_USERS: usize = 100_000;

/// What the room index must read again before it is next used: records changed without the
/// module's writes saying how (the replication stream on a replica, RESTORE, DEL, eviction,
/// edits by hand), and slots whose keys arrived or left all at once.
#[derive(Debug, Default)]
pub struct Stale {
    pub users: BTreeSet<Vec<u8>>,
    pub slots: BTreeSet<u16>,
    /// Everything: too many users were queued.
    pub all: bool,
}

impl Stale {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.slots.is_empty() && !self.all
    }
}

fn stale() -> MutexGuard<'static, Stale> {
    static STALE: Mutex<Stale> = Mutex::new(Stale {
        users: BTreeSet::new(),
        slots: BTreeSet::new(),
        all: false,
    });
    STALE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `user`'s record changed without the room index being told how.
pub fn mark_user_stale(user: &[u8]) {
    let mut stale = stale();
    if stale.all || stale.users.contains(user) {
        return;
    }
    if stale.users.len() >= MAX_STALE_USERS {
        stale.users = BTreeSet::new();
        stale.all = true;
    } else {
        stale.users.insert(user.to_vec());
    }
}

/// Every record of `slot` must be read again.
pub fn mark_slot_stale(slot: u16) {
    stale().slots.insert(slot);
}

/// What is stale, leaving nothing marked.
pub fn take_stale() -> Stale {
    std::mem::take(&mut *stale())
}

/// A member's place in a listing: most recent activity first, then user ids in descending byte
/// order (the order in which a sorted set walks equal scores backwards).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub last_active: Millis,
    pub user: Vec<u8>,
}

impl Position {
    /// The cursor that continues a listing after this member: `<last_active>-<user in hex>`.
    pub fn cursor(&self) -> String {
        let mut text = format!("{}-", self.last_active);
        for b in &self.user {
            text.push_str(&format!("{b:02x}"));
        }
        text
    }

    /// A cursor as [`cursor`](Position::cursor) makes them.
    pub fn parse_cursor(text: &[u8]) -> Option<Position> {
        let text = std::str::from_utf8(text).ok()?;
        let (score, hex) = text.split_once('-')?;
        if hex.is_empty() || hex.len() % 2 != 0 || score.starts_with('+') {
            return None;
        }
        let user = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Position {
            last_active: score.parse().ok()?,
            user,
        })
    }
}

/// One page of a listing (`None`: empty): the first `limit` members after `after` (from the top
/// when `None`), merging the slots' own orders, and whether more follow. `next(slot, bound)`
/// reads the slot's first member after `bound`.
///
/// The merge works on the scores in memory and reads a slot only when its next member is due to
/// be the next row: about one read per row. Slots whose newest member is older than the cursor
/// join the merge only when their turn may come, so a page near the top of a large listing looks
/// at about as many slots as it is deep.
pub fn page(
    listing: Option<&Members>,
    after: Option<&Position>,
    limit: usize,
    mut next: impl FnMut(u16, Option<&Position>) -> Option<Position>,
) -> (Vec<Position>, bool) {
    /// A slot in the merge: a member read from it, or the score of its next member after a bound
    /// (read when it comes up). At equal scores the unread one comes first: its user id is not
    /// known yet.
    enum Head {
        Member(Position, u16),
        Unread(Millis, u16, Option<Position>),
    }
    impl Head {
        fn key(&self) -> (Millis, bool, &[u8]) {
            match self {
                Head::Member(p, _) => (p.last_active, false, p.user.as_slice()),
                Head::Unread(score, ..) => (*score, true, &[]),
            }
        }
    }
    impl PartialEq for Head {
        fn eq(&self, other: &Self) -> bool {
            self.key() == other.key()
        }
    }
    impl Eq for Head {}
    impl PartialOrd for Head {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Head {
        fn cmp(&self, other: &Self) -> Ordering {
            self.key().cmp(&other.key())
        }
    }
    let Some(members) = listing else {
        return (Vec::new(), false);
    };
    // Per slot, the score of the member last read and how many of that score were read: the
    // members of one score are read in a row, so the rest of that score are known.
    let mut read_at: HashMap<u16, (Millis, usize)> = HashMap::new();
    let unread = |slot: u16, bound: Option<Position>, read_at: Option<(Millis, usize)>| {
        let scores = members.scores(slot);
        let score = match &bound {
            None => scores.last().copied(),
            Some(b) => {
                let up_to = scores.partition_point(|s| *s <= b.last_active);
                let below = scores.partition_point(|s| *s < b.last_active);
                let same_left = match read_at {
                    Some((score, n)) if score == b.last_active => (up_to - below).saturating_sub(n),
                    // The cursor's own score: members of it may lie either side of its user.
                    _ => up_to - below,
                };
                if same_left > 0 {
                    Some(b.last_active)
                } else {
                    below.checked_sub(1).map(|i| scores[i])
                }
            }
        }?;
        Some(Head::Unread(score, slot, bound))
    };
    // Slots whose newest member is at or past the cursor's score need a look at their scores now;
    // the others hold nothing but members after the cursor, their newest first: they wait in
    // order of it and join when the merge comes down to their newest member.
    let (mut heads, waiting): (BinaryHeap<Head>, _) = match after {
        None => (BinaryHeap::new(), members.tops.range(..)),
        Some(a) => {
            let split = (a.last_active, 0);
            let heads = members
                .tops
                .range(split..)
                .filter_map(|&(_, slot)| unread(slot, Some(a.clone()), None))
                .collect();
            (heads, members.tops.range(..split))
        }
    };
    let mut waiting = waiting.rev().peekable();
    let mut rows = Vec::with_capacity(limit.min(1024));
    loop {
        while let Some(&&(top, slot)) = waiting.peek() {
            if heads.peek().is_some_and(|head| head.key().0 > top) {
                break;
            }
            heads.push(Head::Unread(top, slot, after.cloned()));
            waiting.next();
        }
        if rows.len() >= limit {
            break;
        }
        match heads.pop() {
            None => break,
            Some(Head::Unread(_, slot, bound)) => {
                if let Some(member) = next(slot, bound.as_ref()) {
                    heads.push(Head::Member(member, slot));
                }
            }
            Some(Head::Member(member, slot)) => {
                let read = match read_at.get(&slot) {
                    Some(&(score, n)) if score == member.last_active => (score, n + 1),
                    _ => (member.last_active, 1),
                };
                read_at.insert(slot, read);
                heads.extend(unread(slot, Some(member.clone()), Some(read)));
                rows.push(member);
            }
        }
    }
    // An unread slot may hold nothing past its bound after all (members of the bound's own score
    // at or above its user id): read until the answer is sure.
    while let Some(Head::Unread(..)) = heads.peek() {
        let Some(Head::Unread(_, slot, bound)) = heads.pop() else {
            break;
        };
        if let Some(member) = next(slot, bound.as_ref()) {
            heads.push(Head::Member(member, slot));
        }
    }
    (rows, !heads.is_empty() || waiting.peek().is_some())
}

/// A small deterministic random source for the unit tests: each call gives a number below `n`.
#[cfg(test)]
pub(crate) fn random_below(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(last_active: Millis, user: &str) -> Position {
        Position {
            last_active,
            user: user.as_bytes().to_vec(),
        }
    }

    /// The listing's slots and their scores, checking that the tops agree with them.
    fn slots(d: &Directory) -> Vec<(u16, Vec<Millis>)> {
        let Some(m) = d.members() else {
            return Vec::new();
        };
        let tops: BTreeSet<(Millis, u16)> = m
            .per_slot
            .iter()
            .map(|(slot, scores)| (*scores.last().unwrap(), *slot))
            .collect();
        assert_eq!(m.tops, tops);
        assert_eq!(
            m.total,
            m.per_slot.values().map(|v| v.len() as u64).sum::<u64>()
        );
        m.per_slot.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    #[test]
    fn the_directory_counts_members_across_slots() {
        let mut d = Directory::default();
        d.set(7, vec![1, 2, 70]);
        d.set(9, vec![5, 90]);
        assert_eq!(d.count(), 5);
        assert_eq!(slots(&d), vec![(7, vec![1, 2, 70]), (9, vec![5, 90])]);
        d.set(7, vec![75]);
        assert_eq!(d.count(), 3);
        // Single moves, as the module's writes report them.
        d.replace(9, Some(90), Some(95));
        d.replace(4, None, Some(40));
        assert_eq!(
            slots(&d),
            vec![(4, vec![40]), (7, vec![75]), (9, vec![5, 95])]
        );
        d.replace(4, Some(40), None);
        d.set(7, vec![]);
        d.set(9, vec![]);
        assert_eq!(d.count(), 0);
        assert!(slots(&d).is_empty());
    }

    #[test]
    fn cursors_round_trip_any_user_id() {
        let p = at(1_700_000_000_123, "a-b:\u{0}\u{ff}");
        assert_eq!(Position::parse_cursor(p.cursor().as_bytes()), Some(p));
        for bad in ["", "0", "12-", "12-abc", "x-61", "12-zz", "+1-61", "1-6é"] {
            assert_eq!(Position::parse_cursor(bad.as_bytes()), None, "{bad}");
        }
    }

    /// The directory of a listing of `members`, as the notifications would build it.
    fn directory_of(members: &[(u16, Position)]) -> Directory {
        let mut scores: BTreeMap<u16, Vec<Millis>> = BTreeMap::new();
        for (slot, p) in members {
            scores.entry(*slot).or_default().push(p.last_active);
        }
        let mut d = Directory::default();
        for (slot, mut held) in scores {
            held.sort_unstable();
            d.set(slot, held);
        }
        d
    }

    /// Slots as sorted lists, walked like sorted sets backwards from a bound.
    fn slots_of(
        members: &[(u16, Position)],
    ) -> impl Fn(u16, Option<&Position>) -> Option<Position> + '_ {
        move |slot, bound| {
            members
                .iter()
                .filter(|(s, p)| *s == slot && bound.is_none_or(|b| p < b))
                .map(|(_, p)| p.clone())
                .max()
        }
    }

    #[test]
    fn pages_merge_slots_most_recent_first_and_resume_after_the_cursor() {
        let members = [
            (1, at(50, "a")),
            (1, at(10, "b")),
            (2, at(40, "c")),
            (2, at(40, "d")),
            (3, at(5, "e")),
        ];
        let next = slots_of(&members);
        let d = directory_of(&members);
        let slots = d.members();
        let (rows, more) = page(slots, None, 3, &next);
        assert_eq!(rows, vec![at(50, "a"), at(40, "d"), at(40, "c")]);
        assert!(more);
        let (rows, more) = page(slots, rows.last(), 3, &next);
        assert_eq!(rows, vec![at(10, "b"), at(5, "e")]);
        assert!(!more);
        let (rows, more) = page(slots, None, 5, &next);
        assert_eq!(rows.len(), 5);
        assert!(!more, "an exactly full last page needs no further cursor");
        let (rows, more) = page(slots, None, 4, &next);
        assert_eq!(rows.len(), 4);
        assert!(more);
        assert_eq!(page(None, None, 5, &next), (vec![], false));
    }

    #[test]
    fn a_page_at_any_depth_reads_about_one_slot_per_row() {
        // 1000 slots of 3 members each; slot s holds scores s, s + 1000 and s + 2000.
        let members: Vec<(u16, Position)> = (0..1000u16)
            .flat_map(|s| (0..3).map(move |k| (s, at(Millis::from(s) + 1000 * k, "u"))))
            .collect();
        let d = directory_of(&members);
        let slots = d.members();
        let next = slots_of(&members);
        let reads = std::cell::Cell::new(0);
        let counted = |slot, bound: Option<&Position>| {
            reads.set(reads.get() + 1);
            next(slot, bound)
        };
        let (rows, more) = page(slots, None, 10, &counted);
        assert_eq!(rows.first().map(|r| r.last_active), Some(2999));
        assert_eq!((rows.len(), more), (10, true));
        assert!(
            reads.get() <= 11,
            "{} reads for the first page",
            reads.get()
        );
        reads.set(0);
        let deep = at(1500, "u");
        let (rows, more) = page(slots, Some(&deep), 10, &counted);
        assert_eq!(rows.first().map(|r| r.last_active), Some(1499));
        assert_eq!((rows.len(), more), (10, true));
        // One more read: the slot of the cursor's own member, which shares the cursor's score.
        assert!(reads.get() <= 12, "{} reads for a deep page", reads.get());
    }

    #[test]
    fn paging_through_any_listing_gives_exactly_the_sorted_members() {
        // Random slots, scores with many ties, and user ids: every page size walks the whole
        // listing in the order of a plain sort, each member once.
        let mut random = random_below(0x2545_f491_4f6c_dd1d);
        for _ in 0..50 {
            let members: Vec<(u16, Position)> = (0..random(200))
                .map(|i| {
                    let user = format!("{}-{i}", random(5));
                    (random(8) as u16, at(random(6) as Millis, &user))
                })
                .collect();
            let mut expected: Vec<Position> = members.iter().map(|(_, p)| p.clone()).collect();
            expected.sort_unstable_by(|a, b| b.cmp(a));
            let d = directory_of(&members);
            let slots = d.members();
            let next = slots_of(&members);
            for limit in [1, 3, 7, 1000] {
                let (mut all, mut after) = (Vec::new(), None::<Position>);
                loop {
                    let (rows, more) = page(slots, after.as_ref(), limit, &next);
                    assert!(rows.len() <= limit);
                    after = rows.last().cloned().or(after);
                    all.extend(rows);
                    if !more {
                        break;
                    }
                }
                assert_eq!(all, expected, "limit {limit}");
            }
        }
    }

    #[test]
    fn a_member_that_becomes_active_mid_listing_is_not_listed_twice() {
        let mut members = vec![(1, at(30, "a")), (1, at(20, "b")), (2, at(10, "c"))];
        let (first, _) = page(
            directory_of(&members).members(),
            None,
            1,
            slots_of(&members),
        );
        assert_eq!(first, vec![at(30, "a")]);
        members[0].1 = at(99, "a");
        let d = directory_of(&members);
        let (rest, more) = page(d.members(), first.last(), 10, slots_of(&members));
        assert_eq!(rest, vec![at(20, "b"), at(10, "c")]);
        assert!(!more);
    }
}
