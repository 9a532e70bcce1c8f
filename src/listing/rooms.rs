//! The rooms' listings (scopes included), held in memory only.
//!
//! A user's rooms are fields of their record; what LIST, COUNT and TYPERS need from them is
//! derived here, per node, and costs no key:
//!
//! - each room keeps its members' places, most recently active first, as one `u64` each: the
//!   member's score (last activity) above its slot. A place names no user: the users of a slot
//!   at a score are read from the slot's listing of everyone (a sorted set by the same score), and
//!   those in the room are told apart through the slot's table below. So a membership costs
//!   about ten bytes, a room's count is its length, and a page reads about one key per row.
//! - each slot keeps a table of its listed users who are in any room: a 32-bit hash of the user
//!   id, their score, and their set of rooms (shared by every user in the same rooms). It is what
//!   a change of the user must undo when nothing else says what they were in: a record changed
//!   by the replication stream, deleted, evicted or restored.
//!
//! The index is pure: the store feeds it what records say and reads the listing keys for it.

use super::ordered::Ordered;
use super::Position;
use crate::keys;
use crate::model::Millis;
use std::collections::HashMap;

/// A room's number while it has members (numbers are reused once a room empties).
type RoomId = u32;

/// The low bits of a member's place hold its slot.
const SLOT_BITS: u32 = 14;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The highest score a place can hold (about 35,000 years of milliseconds); higher scores, and
/// negative ones, which only hand-written keys have, are clamped.
const MAX_SCORE: Millis = (1 << (64 - SLOT_BITS)) - 1;

/// A member's place in a room: higher is more recent.
fn place(score: Millis, slot: u16) -> u64 {
    ((score.clamp(0, MAX_SCORE) as u64) << SLOT_BITS) | (u64::from(slot) & SLOT_MASK)
}

/// The score and slot a place holds.
fn parts(place: u64) -> (Millis, u16) {
    ((place >> SLOT_BITS) as Millis, (place & SLOT_MASK) as u16)
}

/// How a slot's table names a user: FNV-1a of the id, 32 bits.
pub fn user_hash(user: &[u8]) -> u32 {
    user.iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

struct Room {
    name: Box<[u8]>,
    members: Ordered,
}

/// A listed user of a slot who is in at least one room.
#[derive(Clone, Copy, Debug)]
struct Entry {
    hash: u32,
    /// Their set of rooms, in [`RoomSets`].
    set: u32,
    score: Millis,
}

/// Sets of rooms, each stored once however many users are in exactly those rooms.
#[derive(Default)]
struct RoomSets {
    ids: HashMap<Box<[RoomId]>, u32>,
    /// Each set and how many entries use it.
    sets: Vec<(Box<[RoomId]>, u32)>,
    free: Vec<u32>,
}

impl RoomSets {
    /// The number of the set `rooms` (sorted, distinct), taking a reference to it.
    fn take(&mut self, rooms: Box<[RoomId]>) -> u32 {
        if let Some(&id) = self.ids.get(&rooms) {
            if let Some((_, refs)) = self.sets.get_mut(id as usize) {
                *refs += 1;
            }
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.sets.get_mut(id as usize) {
                    *slot = (rooms.clone(), 1);
                }
                id
            }
            None => {
                self.sets.push((rooms.clone(), 1));
                (self.sets.len() - 1) as u32
            }
        };
        self.ids.insert(rooms, id);
        id
    }

    /// Drops a reference to set `id`; the set goes with its last one.
    fn release(&mut self, id: u32) {
        let Some((rooms, refs)) = self.sets.get_mut(id as usize) else {
            return;
        };
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            let rooms = std::mem::take(rooms);
            self.ids.remove(&rooms);
            self.free.push(id);
        }
    }

    fn get(&self, id: u32) -> &[RoomId] {
        self.sets.get(id as usize).map_or(&[], |(rooms, _)| rooms)
    }
}

/// Every room's members on this node, and each slot's table of its users in rooms.
#[derive(Default)]
pub struct RoomIndex {
    names: HashMap<Box<[u8]>, RoomId>,
    rooms: Vec<Option<Room>>,
    free: Vec<RoomId>,
    sets: RoomSets,
    /// Per slot (once any is used), its entries sorted by hash, then score.
    slots: Vec<Vec<Entry>>,
}

impl RoomIndex {
    fn room(&self, name: &[u8]) -> Option<&Room> {
        let id = *self.names.get(name)?;
        self.rooms.get(id as usize)?.as_ref()
    }

    /// The number of room `name`, giving it one if it has none.
    fn room_id(&mut self, name: &[u8]) -> RoomId {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let room = Room {
            name: name.into(),
            members: Ordered::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.rooms.get_mut(id as usize) {
                    *slot = Some(room);
                }
                id
            }
            None => {
                self.rooms.push(Some(room));
                (self.rooms.len() - 1) as RoomId
            }
        };
        self.names.insert(name.into(), id);
        id
    }

    fn table(&self, slot: u16) -> &[Entry] {
        self.slots.get(usize::from(slot)).map_or(&[], Vec::as_slice)
    }

    /// The entries of `user` in the slot's table (one, unless another user of the slot shares
    /// the hash), as the range of their positions.
    fn entries_of(&self, slot: u16, hash: u32) -> std::ops::Range<usize> {
        let table = self.table(slot);
        let start = table.partition_point(|e| e.hash < hash);
        let end = table.partition_point(|e| e.hash <= hash);
        start..end
    }

    /// The scores the slot's table holds for `user` (more than one only when another user of
    /// the slot has the same hash): what the store checks against the listing of everyone to
    /// find the user's own entry.
    pub fn held(&self, slot: u16, user: &[u8]) -> Vec<Millis> {
        let range = self.entries_of(slot, user_hash(user));
        self.table(slot)
            .get(range)
            .unwrap_or_default()
            .iter()
            .map(|e| e.score)
            .collect()
    }

    /// Replaces what the index holds for `user` of `slot`: its entries at the scores `held` go
    /// (those it holds), and the user is put in `rooms` at `score` (nowhere when `new` is `None`
    /// or names no room). A user who keeps their score only moves in the rooms they join or
    /// leave, so a JOIN costs one place whatever the user's other rooms.
    pub fn put(
        &mut self,
        slot: u16,
        user: &[u8],
        held: &[Millis],
        new: Option<(Millis, &[&[u8]])>,
    ) {
        let hash = user_hash(user);
        let mut old = Vec::new();
        for &score in held {
            let range = self.entries_of(slot, hash);
            let found = self
                .table(slot)
                .get(range.clone())
                .and_then(|entries| entries.iter().position(|e| e.score == score));
            let Some(table) = self.slots.get_mut(usize::from(slot)) else {
                break;
            };
            if let Some(i) = found.map(|i| range.start + i).filter(|i| *i < table.len()) {
                old.push(table.remove(i));
                if table.is_empty() {
                    *table = Vec::new();
                }
            }
        }
        let new = new.filter(|(_, rooms)| !rooms.is_empty());
        let (score, ids) = match new {
            Some((score, rooms)) => {
                let mut ids: Vec<RoomId> = rooms.iter().map(|room| self.room_id(room)).collect();
                ids.sort_unstable();
                ids.dedup();
                (score, ids)
            }
            None => (0, Vec::new()),
        };
        // The first old entry at the same score moves only where the rooms differ; the others
        // (and one at another score) leave all their rooms.
        let same = old.iter().position(|e| new.is_some() && e.score == score);
        let kept: Vec<RoomId> = same
            .and_then(|i| old.get(i))
            .map(|e| self.sets.get(e.set).to_vec())
            .unwrap_or_default();
        let at = place(score, slot);
        for id in ids.iter().filter(|id| kept.binary_search(id).is_err()) {
            if let Some(Some(room)) = self.rooms.get_mut(*id as usize) {
                room.members.insert(at);
            }
        }
        for (i, entry) in old.into_iter().enumerate() {
            if Some(i) == same {
                let gone: Vec<RoomId> = kept
                    .iter()
                    .filter(|id| ids.binary_search(id).is_err())
                    .copied()
                    .collect();
                self.leave(slot, entry.score, &gone);
                self.sets.release(entry.set);
            } else {
                self.unlist(slot, entry);
            }
        }
        if ids.is_empty() {
            return;
        }
        let set = self.sets.take(ids.into_boxed_slice());
        if self.slots.is_empty() {
            self.slots = (0..keys::SLOTS).map(|_| Vec::new()).collect();
        }
        if let Some(table) = self.slots.get_mut(usize::from(slot)) {
            let i = table.partition_point(|e| (e.hash, e.score) < (hash, score));
            if table.len() == table.capacity() {
                // Grown by an eighth, not doubled: a table is written far less often than read.
                table.reserve_exact((table.len() / 8).max(4));
            }
            table.insert(i, Entry { hash, set, score });
        }
    }

    /// Replaces everything with `users` (slot, user, score, rooms), loaded at once: each table
    /// and each room sorted once, rooms in full blocks (a rebuild after loading, a flush or
    /// SWAPDB). The users are taken one at a time, so a caller can read them as it goes.
    pub fn load(&mut self, users: impl IntoIterator<Item = (u16, Vec<u8>, Millis, Vec<Vec<u8>>)>) {
        self.clear();
        let mut places: Vec<Vec<u64>> = Vec::new();
        let mut tables: Vec<Vec<Entry>> = (0..keys::SLOTS).map(|_| Vec::new()).collect();
        for (slot, user, score, rooms) in users {
            let mut ids: Vec<RoomId> = rooms.iter().map(|room| self.room_id(room)).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                continue;
            }
            for id in &ids {
                let id = *id as usize;
                if places.len() <= id {
                    places.resize_with(id + 1, Vec::new);
                }
                if let Some(room) = places.get_mut(id) {
                    room.push(place(score, slot));
                }
            }
            let set = self.sets.take(ids.into_boxed_slice());
            if let Some(table) = tables.get_mut(usize::from(slot)) {
                table.push(Entry {
                    hash: user_hash(&user),
                    set,
                    score,
                });
            }
        }
        for (room, values) in self.rooms.iter_mut().zip(places) {
            if let Some(room) = room {
                room.members = Ordered::from_values(values);
            }
        }
        for table in &mut tables {
            table.sort_unstable_by_key(|e| (e.hash, e.score));
            table.shrink_to_fit();
        }
        self.slots = tables;
    }

    /// Takes the place at `score` of `slot` out of `rooms`, and rooms left empty out of the index.
    fn leave(&mut self, slot: u16, score: Millis, rooms: &[RoomId]) {
        let at = place(score, slot);
        for &id in rooms {
            let Some(Some(room)) = self.rooms.get_mut(id as usize) else {
                continue;
            };
            room.members.remove(at);
            if room.members.is_empty() {
                self.names.remove(&room.name);
                if let Some(gone) = self.rooms.get_mut(id as usize) {
                    *gone = None;
                }
                self.free.push(id);
            }
        }
    }

    /// Takes an entry's places out of its rooms, and rooms left empty out of the index.
    fn unlist(&mut self, slot: u16, entry: Entry) {
        let rooms = self.sets.get(entry.set).to_vec();
        self.leave(slot, entry.score, &rooms);
        self.sets.release(entry.set);
    }

    /// Forgets every entry of `slot` (to read it again, or because its keys left the node).
    pub fn clear_slot(&mut self, slot: u16) {
        let Some(table) = self.slots.get_mut(usize::from(slot)) else {
            return;
        };
        for entry in std::mem::take(table) {
            self.unlist(slot, entry);
        }
    }

    /// Keeps the entries of `slot` whose user hash `listed` accepts; how many it removed.
    pub fn retain_slot(&mut self, slot: u16, listed: impl Fn(u32) -> bool) -> usize {
        let Some(table) = self.slots.get_mut(usize::from(slot)) else {
            return 0;
        };
        let (kept, gone): (Vec<Entry>, Vec<Entry>) = std::mem::take(table)
            .into_iter()
            .partition(|e| listed(e.hash));
        if let Some(table) = self.slots.get_mut(usize::from(slot)) {
            *table = kept;
        }
        let removed = gone.len();
        for entry in gone {
            self.unlist(slot, entry);
        }
        removed
    }

    /// Forgets everything, memory included.
    pub fn clear(&mut self) {
        *self = RoomIndex::default();
    }

    /// How many listed users room `name` has on this node.
    pub fn count(&self, name: &[u8]) -> u64 {
        self.room(name).map_or(0, |room| room.members.len() as u64)
    }

    /// How many rooms have members.
    pub fn rooms(&self) -> usize {
        self.names.len()
    }

    /// Whether the slot's table puts `user`, at `score`, in room `name`.
    pub fn in_room(&self, slot: u16, user: &[u8], score: Millis, name: &[u8]) -> bool {
        let Some(&id) = self.names.get(name) else {
            return false;
        };
        let range = self.entries_of(slot, user_hash(user));
        self.table(slot)
            .get(range)
            .unwrap_or_default()
            .iter()
            .any(|e| e.score == score && self.sets.get(e.set).binary_search(&id).is_ok())
    }

    /// One page of room `name`: the first `limit` members after `after` (from the top when
    /// `None`), in the order of LIST (most recently active first, then user ids in descending
    /// byte order), and whether more may follow. `at(slot, score)` reads the users of the slot's
    /// listing of everyone at that score.
    pub fn page(
        &self,
        name: &[u8],
        after: Option<&Position>,
        limit: usize,
        mut at: impl FnMut(u16, Millis) -> Vec<Vec<u8>>,
    ) -> (Vec<Position>, bool) {
        let Some(room) = self.room(name) else {
            return (Vec::new(), false);
        };
        let mut members_at = |place_: u64| -> Vec<Vec<u8>> {
            let (score, slot) = parts(place_);
            let mut users = at(slot, score);
            users.retain(|user| self.in_room(slot, user, score, name));
            users
        };
        let mut rows = Vec::with_capacity(limit.min(1024));
        // Every place at or below the cursor's score (of any slot).
        let bound = after.and_then(|a| place(a.last_active, SLOT_MASK as u16).checked_add(1));
        let mut places = room.members.distinct_below(bound).peekable();
        while let Some(first) = places.next() {
            if rows.len() >= limit {
                // A place is left (whose members a later page reads).
                return (rows, true);
            }
            // The members of one score, from every slot that has some, in user id order.
            let (score, _) = parts(first);
            let mut users = members_at(first);
            while let Some(&next) = places.peek() {
                if parts(next).0 != score {
                    break;
                }
                users.extend(members_at(next));
                places.next();
            }
            if let Some(a) = after.filter(|a| place(a.last_active, 0) >> SLOT_BITS == score as u64)
            {
                users.retain(|user| user.as_slice() < a.user.as_slice());
            }
            users.sort_unstable_by(|a, b| b.cmp(a));
            users.dedup();
            let mut users = users.into_iter().peekable();
            while let Some(user) = users.next() {
                rows.push(Position {
                    last_active: score,
                    user,
                });
                if rows.len() >= limit && users.peek().is_some() {
                    return (rows, true);
                }
            }
        }
        (rows, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Users as the listing keys hold them: (slot, score) → ids.
    type Listing = BTreeMap<(u16, Millis), Vec<Vec<u8>>>;

    fn listing_of(users: &[(&str, Millis)]) -> Listing {
        let mut listing = Listing::new();
        for (user, score) in users {
            listing
                .entry((keys::slot(user.as_bytes()), *score))
                .or_default()
                .push(user.as_bytes().to_vec());
        }
        listing
    }

    fn reader(listing: &Listing) -> impl FnMut(u16, Millis) -> Vec<Vec<u8>> + '_ {
        move |slot, score| listing.get(&(slot, score)).cloned().unwrap_or_default()
    }

    fn all(index: &RoomIndex, room: &str, listing: &Listing, limit: usize) -> Vec<Position> {
        let (mut out, mut after) = (Vec::new(), None::<Position>);
        loop {
            let (rows, more) = index.page(room.as_bytes(), after.as_ref(), limit, reader(listing));
            assert!(rows.len() <= limit);
            after = rows.last().cloned().or(after);
            out.extend(rows);
            if !more {
                return out;
            }
        }
    }

    fn put(
        index: &mut RoomIndex,
        user: &str,
        held: Option<Millis>,
        new: Option<(Millis, &[&str])>,
    ) {
        let held: Vec<Millis> = held.into_iter().collect();
        let rooms: Vec<&[u8]> = new.map_or(Vec::new(), |(_, r)| {
            r.iter().map(|r| r.as_bytes()).collect()
        });
        let new = new.map(|(score, _)| (score, rooms.as_slice()));
        index.put(keys::slot(user.as_bytes()), user.as_bytes(), &held, new);
    }

    #[test]
    fn rooms_count_and_page_their_members_most_recent_first() {
        let mut index = RoomIndex::default();
        put(&mut index, "alice", None, Some((30, &["hall", "team"])));
        put(&mut index, "bob", None, Some((20, &["hall"])));
        put(&mut index, "carol", None, Some((40, &["team"])));
        let listing = listing_of(&[("alice", 30), ("bob", 20), ("carol", 40), ("dan", 30)]);
        assert_eq!(
            (index.count(b"hall"), index.count(b"team"), index.rooms()),
            (2, 2, 2)
        );
        let users = |rows: Vec<Position>| -> Vec<String> {
            rows.into_iter()
                .map(|p| String::from_utf8(p.user).unwrap())
                .collect()
        };
        assert_eq!(users(all(&index, "hall", &listing, 1)), ["alice", "bob"]);
        assert_eq!(users(all(&index, "team", &listing, 10)), ["carol", "alice"]);
        // alice becomes active and leaves the team; bob goes offline.
        put(&mut index, "alice", Some(30), Some((50, &["hall"])));
        put(&mut index, "bob", Some(20), None);
        let listing = listing_of(&[("alice", 50), ("carol", 40)]);
        assert_eq!(users(all(&index, "hall", &listing, 1)), ["alice"]);
        assert_eq!(users(all(&index, "team", &listing, 1)), ["carol"]);
        assert_eq!(index.count(b"hall"), 1);
        put(&mut index, "alice", Some(50), None);
        put(&mut index, "carol", Some(40), None);
        assert_eq!((index.count(b"hall"), index.rooms()), (0, 0));
        assert!(index.sets.ids.is_empty());
        assert_eq!(
            index.page(b"hall", None, 10, reader(&listing)),
            (vec![], false)
        );
    }

    #[test]
    fn paging_any_room_gives_each_member_once_in_order() {
        let mut random = super::super::random_below(0x2545_f491_4f6c_dd1d);
        for _ in 0..30 {
            let mut index = RoomIndex::default();
            let mut users = Vec::new();
            let mut expected = Vec::new();
            for i in 0..random(300) {
                // Few scores and few slots' worth of ids: many ties, some in the same slot.
                let user = format!("u{}", i);
                let score = random(5) as Millis;
                let in_room = random(3) > 0;
                let rooms: &[&str] = if in_room { &["r", "other"] } else { &["other"] };
                put(&mut index, &user, None, Some((score, rooms)));
                users.push((user.clone(), score));
                if in_room {
                    expected.push((score, user));
                }
            }
            expected.sort_unstable_by(|a, b| b.cmp(a));
            let expected: Vec<String> = expected.into_iter().map(|(_, u)| u).collect();
            let pairs: Vec<(&str, Millis)> = users.iter().map(|(u, s)| (u.as_str(), *s)).collect();
            let listing = listing_of(&pairs);
            for limit in [1, 2, 7, 1000] {
                let got: Vec<String> = all(&index, "r", &listing, limit)
                    .into_iter()
                    .map(|p| String::from_utf8(p.user).unwrap())
                    .collect();
                assert_eq!(got, expected, "limit {limit}");
            }
            assert_eq!(index.count(b"r"), expected.len() as u64);
        }
    }

    #[test]
    fn a_loaded_index_answers_as_one_built_user_by_user() {
        let users: Vec<(String, Millis, Vec<&str>)> = (0..500)
            .map(|i| {
                (
                    format!("u{i}"),
                    (i * 37 % 101) as Millis,
                    if i % 3 == 0 {
                        vec!["a", "b"]
                    } else {
                        vec!["b"]
                    },
                )
            })
            .collect();
        let mut one_by_one = RoomIndex::default();
        for (user, score, rooms) in &users {
            put(&mut one_by_one, user, None, Some((*score, rooms)));
        }
        let mut loaded = RoomIndex::default();
        loaded.load(users.iter().map(|(user, score, rooms)| {
            let rooms = rooms.iter().map(|r| r.as_bytes().to_vec()).collect();
            (
                keys::slot(user.as_bytes()),
                user.as_bytes().to_vec(),
                *score,
                rooms,
            )
        }));
        let pairs: Vec<(&str, Millis)> = users.iter().map(|(u, s, _)| (u.as_str(), *s)).collect();
        let listing = listing_of(&pairs);
        for room in ["a", "b"] {
            assert_eq!(
                loaded.count(room.as_bytes()),
                one_by_one.count(room.as_bytes())
            );
            assert_eq!(
                all(&loaded, room, &listing, 7),
                all(&one_by_one, room, &listing, 7)
            );
        }
        // And it goes on changing as usual.
        put(&mut loaded, "u0", Some(0), None);
        assert_eq!(loaded.count(b"a"), one_by_one.count(b"a") - 1);
    }

    #[test]
    fn users_that_share_a_hash_keep_their_own_entries() {
        // Two ids of one slot with the same hash are found by their score.
        let mut index = RoomIndex::default();
        let (slot, hash) = (7, 99);
        let put_as = |index: &mut RoomIndex, held, new: Option<(Millis, &[&[u8]])>| {
            // Bypasses the hash of the id: both "users" hash alike.
            if let Some(score) = held {
                let range = index.entries_of(slot, hash);
                let i = index.table(slot)[range.clone()]
                    .iter()
                    .position(|e| e.score == score);
                if let Some(i) = i {
                    let entry = index.slots[usize::from(slot)].remove(range.start + i);
                    index.unlist(slot, entry);
                }
            }
            if let Some((score, rooms)) = new {
                let ids: Vec<RoomId> = rooms.iter().map(|r| index.room_id(r)).collect();
                for id in &ids {
                    index.rooms[*id as usize]
                        .as_mut()
                        .unwrap()
                        .members
                        .insert(place(score, slot));
                }
                let set = index.sets.take(ids.into_boxed_slice());
                if index.slots.is_empty() {
                    index.slots = (0..keys::SLOTS).map(|_| Vec::new()).collect();
                }
                let table = &mut index.slots[usize::from(slot)];
                let i = table.partition_point(|e| (e.hash, e.score) < (hash, score));
                table.insert(i, Entry { hash, set, score });
            }
        };
        put_as(&mut index, None, Some((10, &[b"a"])));
        put_as(&mut index, None, Some((20, &[b"b"])));
        assert_eq!(index.entries_of(slot, hash).len(), 2);
        put_as(&mut index, Some(20), None);
        assert_eq!((index.count(b"a"), index.count(b"b")), (1, 0));
        index.clear_slot(slot);
        assert_eq!((index.count(b"a"), index.rooms()), (0, 0));
    }

    #[test]
    fn places_order_by_score_then_slot_and_clamp_what_no_clock_writes() {
        assert!(place(2, 0) > place(1, 16383));
        assert_eq!(
            parts(place(1_795_325_923_140, 16383)),
            (1_795_325_923_140, 16383)
        );
        assert_eq!(parts(place(-5, 3)), (0, 3));
        assert_eq!(parts(place(Millis::MAX, 3)), (MAX_SCORE, 3));
    }
}
