//! Online listings: who is online (everyone, or the members of a scope), most recently active
//! first, and how many.
//!
//! Each listing is stored per slot (`keys::listing_key`), so every key stays in its user's slot.
//! Answering a node-wide question from 16384 possible keys per listing needs to know which of
//! them hold anything: the node keeps in memory, per listing, the number of members of each
//! non-empty slot and their total. That directory is derived from the keys alone. It follows
//! every change to a listing key through keyspace notifications (the module's own writes, the
//! replication stream on a replica, keys restored or deleted by resharding, edits by hand) and
//! is rebuilt from a scan of the keyspace after loading and after a flush. So `COUNT` is one
//! lookup, and a `LIST` page visits only the slots that hold members.

use crate::model::Millis;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// Most rows a LIST page may ask for, and how many it gives by default.
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

/// One listing's members per slot.
#[derive(Debug, Default)]
struct Members {
    total: u64,
    per_slot: BTreeMap<u16, u64>,
}

/// Member counts of every non-empty listing, by scope (`None`: everyone).
#[derive(Debug, Default)]
pub struct Directory {
    listings: HashMap<Option<Vec<u8>>, Members>,
}

impl Directory {
    /// Records that the listing's key in `slot` now holds `len` members.
    pub fn set(&mut self, scope: Option<&[u8]>, slot: u16, len: u64) {
        let key = scope.map(<[u8]>::to_vec);
        let members = self.listings.entry(key.clone()).or_default();
        let old = if len == 0 {
            members.per_slot.remove(&slot).unwrap_or(0)
        } else {
            members.per_slot.insert(slot, len).unwrap_or(0)
        };
        members.total = members.total + len - old;
        if members.per_slot.is_empty() {
            self.listings.remove(&key);
        }
    }

    pub fn count(&self, scope: Option<&[u8]>) -> u64 {
        self.find(scope).map_or(0, |m| m.total)
    }

    /// The slots whose key of the listing holds members.
    pub fn slots(&self, scope: Option<&[u8]>) -> Vec<u16> {
        self.find(scope)
            .map_or_else(Vec::new, |m| m.per_slot.keys().copied().collect())
    }

    pub fn clear(&mut self) {
        self.listings.clear();
    }

    fn find(&self, scope: Option<&[u8]>) -> Option<&Members> {
        // HashMap lookups need the owned key form; scopes are short.
        self.listings.get(&scope.map(<[u8]>::to_vec))
    }
}

/// The node's directory. Commands, notifications and server events all run on the main thread;
/// the lock only satisfies the type system.
pub fn directory() -> MutexGuard<'static, Directory> {
    static DIRECTORY: LazyLock<Mutex<Directory>> = LazyLock::new(Mutex::default);
    DIRECTORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// One page of a listing spread over `slots`: the first `limit` members after `after` (from the
/// top when `None`), merging the slots' own orders, and whether more follow. `next(slot, bound)`
/// gives the slot's first member after `bound`. Costs one `next` per slot and one per row.
pub fn page(
    slots: &[u16],
    after: Option<&Position>,
    limit: usize,
    mut next: impl FnMut(u16, Option<&Position>) -> Option<Position>,
) -> (Vec<Position>, bool) {
    struct Head(Position, u16);
    impl PartialEq for Head {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
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
            self.0.cmp(&other.0)
        }
    }
    let mut heads: BinaryHeap<Head> = slots
        .iter()
        .filter_map(|&slot| next(slot, after).map(|p| Head(p, slot)))
        .collect();
    let mut rows = Vec::with_capacity(limit.min(heads.len()));
    while rows.len() < limit {
        let Some(Head(top, slot)) = heads.pop() else {
            break;
        };
        if let Some(following) = next(slot, Some(&top)) {
            heads.push(Head(following, slot));
        }
        rows.push(top);
    }
    (rows, !heads.is_empty())
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

    #[test]
    fn the_directory_counts_members_across_slots() {
        let mut d = Directory::default();
        d.set(None, 7, 3);
        d.set(None, 9, 2);
        d.set(Some(b"zone"), 9, 1);
        assert_eq!(d.count(None), 5);
        assert_eq!(d.slots(None), vec![7, 9]);
        d.set(None, 7, 1);
        assert_eq!(d.count(None), 3);
        d.set(None, 7, 0);
        d.set(None, 9, 0);
        assert_eq!(d.count(None), 0);
        assert!(d.slots(None).is_empty());
        assert_eq!(d.count(Some(b"zone")), 1);
        assert_eq!(d.count(Some(b"other")), 0);
    }

    #[test]
    fn cursors_round_trip_any_user_id() {
        let p = at(1_700_000_000_123, "a-b:\u{0}\u{ff}");
        assert_eq!(Position::parse_cursor(p.cursor().as_bytes()), Some(p));
        for bad in ["", "0", "12-", "12-abc", "x-61", "12-zz", "+1-61", "1-6é"] {
            assert_eq!(Position::parse_cursor(bad.as_bytes()), None, "{bad}");
        }
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
        let (rows, more) = page(&[1, 2, 3], None, 3, &next);
        assert_eq!(rows, vec![at(50, "a"), at(40, "d"), at(40, "c")]);
        assert!(more);
        let (rows, more) = page(&[1, 2, 3], rows.last(), 3, &next);
        assert_eq!(rows, vec![at(10, "b"), at(5, "e")]);
        assert!(!more);
        let (rows, more) = page(&[1, 2, 3], None, 5, &next);
        assert_eq!(rows.len(), 5);
        assert!(!more, "an exactly full last page needs no further cursor");
        assert_eq!(page(&[], None, 5, &next), (vec![], false));
    }

    #[test]
    fn a_member_that_becomes_active_mid_listing_is_not_listed_twice() {
        let mut members = vec![(1, at(30, "a")), (1, at(20, "b")), (2, at(10, "c"))];
        let (first, _) = page(&[1, 2], None, 1, slots_of(&members));
        assert_eq!(first, vec![at(30, "a")]);
        members[0].1 = at(99, "a");
        let (rest, more) = page(&[1, 2], first.last(), 10, slots_of(&members));
        assert_eq!(rest, vec![at(20, "b"), at(10, "c")]);
        assert!(!more);
    }
}
