//! The listings of online users: the per-slot listing of everyone (a sorted set scored by last
//! activity) with its in-memory directory, and the rooms' listings, which live in memory only
//! (`listing::rooms`) and are derived from the records.

use super::effect::{self, Effect};
use super::{now, user};
use crate::listing::{self, rooms::user_hash, Position};
use crate::model::{Millis, Record};
use crate::server::Key;
use crate::{config, deadlines, guard, keys, migration};
use redis_module::{raw, Context, RedisError, RedisString};

/// WRONGTYPE if the slot's listing of everyone is a key of another type than a sorted set (a
/// write would leave the user out of it).
pub fn check_type(ctx: &Context, slot: u16) -> Result<(), RedisError> {
    Key::open(ctx, &keys::listing_key(slot, None), false).check_type(raw::KeyType::ZSet)
}

/// Puts `user` in the slot's listing of everyone with `score`, or takes them out (`None`), unless
/// it is so already, and tells the directory exactly what changed (the write's keyspace
/// notification is the module's own, so the directory does not re-read the key). Whether it
/// changed anything. A listing key that a client overwrote with another type is left alone
/// (client writes refuse it first with WRONGTYPE, see [`check_type`]).
pub fn set(ctx: &Context, slot: u16, user: &[u8], score: Option<Millis>) -> bool {
    let key = Key::open(ctx, &keys::listing_key(slot, None), true);
    if key.check_type(raw::KeyType::ZSet).is_err() {
        return false;
    }
    let old = key.zset_score(user).map(|s| s as Millis);
    if old == score {
        return false;
    }
    match score {
        Some(score) => effect::apply(ctx, &key, Effect::ZAdd(&[(score, user.to_vec())])),
        None => effect::apply(ctx, &key, Effect::ZRem(&[user.to_vec()])),
    };
    listing::directory().replace(slot, old, score);
    if let Some(active) = score {
        // The user may go idle `away-after` from this activity: the sweep looks then.
        let away_after = config::away_after();
        if away_after.is_positive() {
            deadlines::note(slot, away_after.after(active));
        }
    }
    true
}

/// Where a record puts its user in the rooms' listings: their score and rooms, if listed in any.
fn in_rooms(record: &Record) -> Option<(Millis, Vec<&[u8]>)> {
    let score = record.listed()?;
    let rooms: Vec<&[u8]> = record.rooms().into_iter().collect();
    (!rooms.is_empty()).then_some((score, rooms))
}

/// Moves `user` in the rooms' listings from where record `before` put them to where `after`
/// does: the module's own write, which knows both.
pub fn move_in_rooms(slot: u16, user: &[u8], before: &Record, after: &Record) {
    let (old, new) = (in_rooms(before), in_rooms(after));
    if old == new {
        return;
    }
    let held: Vec<Millis> = old.iter().map(|(score, _)| *score).collect();
    let new = new
        .as_ref()
        .map(|(score, rooms)| (*score, rooms.as_slice()));
    listing::room_index().put(slot, user, &held, new);
}

/// Puts `user` in the rooms' listings as `record` says (`None`: the record is gone), whatever
/// the index held for them: a record changed by other means than the module's writes.
pub fn rooms_as_recorded(ctx: &Context, slot: u16, user: &[u8], record: Option<&Record>) {
    let held = own_entries(ctx, slot, user);
    let new = record.and_then(in_rooms);
    let new = new
        .as_ref()
        .map(|(score, rooms)| (*score, rooms.as_slice()));
    if held.is_empty() && new.is_none() {
        return;
    }
    listing::room_index().put(slot, user, &held, new);
}

/// The scores at which the slot's table of the room index holds `user`. The table names users by
/// a hash of their id, so an entry is another user's when the listing of everyone holds,
/// at that score, another user of the same hash.
fn own_entries(ctx: &Context, slot: u16, user: &[u8]) -> Vec<Millis> {
    let mut held = listing::room_index().held(slot, user);
    if held.is_empty() {
        return held;
    }
    let hash = user_hash(user);
    held.retain(|&score| {
        !users_at(ctx, slot, score)
            .iter()
            .any(|other| other.as_slice() != user && user_hash(other) == hash)
    });
    held
}

/// Reads `user`'s record again and puts them in the rooms' listings as it says.
pub fn resync_user(ctx: &Context, user: &[u8]) {
    let record = user::stored_for_listings(ctx, user, now());
    rooms_as_recorded(ctx, keys::slot(user), user, record.as_ref());
}

/// Reads every listed user of `slot` again into the rooms' listings (the slot's keys arrived or
/// left all at once).
fn resync_slot(ctx: &Context, slot: u16) {
    listing::room_index().clear_slot(slot);
    let now = now();
    for (user, _) in members(ctx, slot) {
        if let Some(record) = user::stored_for_listings(ctx, &user, now) {
            rooms_as_recorded(ctx, slot, &user, Some(&record));
        }
    }
}

/// Takes `user` out of every listing of `slot`: their record is gone. Whether they were in the
/// listing of everyone.
pub fn forget(ctx: &Context, slot: u16, user: &[u8]) -> bool {
    rooms_as_recorded(ctx, slot, user, None);
    set(ctx, slot, user, None)
}

/// Up to `limit` users of the slot's listing of everyone after position `after` (from the start
/// when `None`) whose last activity is at or before `until`, least recently active first: the
/// users the sweep checks for going idle.
pub fn idle_candidates(
    ctx: &Context,
    slot: u16,
    after: Option<&Position>,
    until: Millis,
    limit: usize,
) -> Vec<Position> {
    let key = Key::open(ctx, &keys::listing_key(slot, None), false);
    key.zset_after(
        after.map(|a| (a.last_active as f64, a.user.as_slice())),
        until as f64,
        limit,
    )
    .into_iter()
    .map(|(user, score)| Position {
        last_active: score as Millis,
        user,
    })
    .collect()
}

/// The first member of a slot's listing of everyone after `bound` (from the top when `None`).
pub fn next(ctx: &Context, slot: u16, bound: Option<&Position>) -> Option<Position> {
    let key = Key::open(ctx, &keys::listing_key(slot, None), false);
    key.zset_first_below(bound.map(|b| (b.last_active as f64, b.user.as_slice())))
        .map(|(user, score)| Position {
            last_active: score as Millis,
            user,
        })
}

/// The users of the slot's listing of everyone at exactly `score`.
fn users_at(ctx: &Context, slot: u16, score: Millis) -> Vec<Vec<u8>> {
    let key = Key::open(ctx, &keys::listing_key(slot, None), false);
    let mut users = Vec::new();
    key.zset_walk(score as f64, score as f64, false, |member, _| {
        users.push(member.to_vec());
        true
    });
    users
}

/// Every member of the slot's listing of everyone, with its score.
fn members(ctx: &Context, slot: u16) -> Vec<(Vec<u8>, Millis)> {
    let key = Key::open(ctx, &keys::listing_key(slot, None), false);
    let mut out = Vec::new();
    key.zset_walk(f64::NEG_INFINITY, f64::INFINITY, false, |member, score| {
        out.push((member.to_vec(), score as Millis));
        true
    });
    out
}

/// One page of room `room`: see `RoomIndex::page`.
pub fn room_page(
    ctx: &Context,
    room: &[u8],
    after: Option<&Position>,
    limit: usize,
) -> (Vec<Position>, bool) {
    // Reading keys sends no notification, so nothing changes the index meanwhile.
    listing::room_index().page(room, after, limit, |slot, score| users_at(ctx, slot, score))
}

/// Brings the listing directory and the room index up to date with the keys changed by other
/// means than the module's writes (see `listing::mark_dirty`, `listing::mark_user_stale`).
/// Called before either is read.
pub fn refresh_directory(ctx: &Context) {
    listing::refresh(|slot| scores(ctx, &keys::listing_key(slot, None)));
    let stale = listing::take_stale();
    if stale.is_empty() {
        return;
    }
    if stale.all {
        rebuild_rooms(ctx);
        return;
    }
    for slot in stale.slots {
        if !migration::importing(slot) {
            resync_slot(ctx, slot);
        }
    }
    for user in stale.users {
        if !migration::importing(keys::slot(&user)) {
            resync_user(ctx, &user);
        }
    }
}

/// Rebuilds the listing directory from the listing keys in the keyspace, and the room index from
/// the records of the users they list.
pub fn rebuild_directory(ctx: &Context) {
    let started = std::time::Instant::now();
    listing::clear_dirty();
    let names = all_keys(ctx);
    {
        let mut directory = listing::directory();
        directory.clear();
        for name in &names {
            if let Some((slot, None)) = keys::parse_listing_key(name) {
                directory.set(slot, scores(ctx, name));
            }
        }
    }
    rebuild_rooms(ctx);
    let listed = listing::directory().count();
    let rooms = listing::room_index().rooms();
    if listed > 0 {
        guard::log_notice(&format!(
            "presence: listings rebuilt from the keys in {} ms: {listed} users listed, {rooms} rooms",
            started.elapsed().as_millis()
        ));
    }
}

/// Rebuilds the room index from the records of every listed user, read as it goes.
fn rebuild_rooms(ctx: &Context) {
    let slots: Vec<u16> = listing::directory()
        .members()
        .map(|m| m.slots().collect())
        .unwrap_or_default();
    let now = now();
    let listed = slots.into_iter().flat_map(|slot| {
        members(ctx, slot).into_iter().filter_map(move |(user, _)| {
            let record = user::stored_for_listings(ctx, &user, now)?;
            let (score, rooms) = in_rooms(&record)?;
            let rooms = rooms.into_iter().map(<[u8]>::to_vec).collect();
            Some((slot, user, score, rooms))
        })
    });
    listing::room_index().load(listed);
}

/// The scores of the sorted set `name`, lowest first, as the listing directory keeps them.
fn scores(ctx: &Context, name: &[u8]) -> Vec<Millis> {
    Key::open(ctx, name, false).zset_scores()
}

/// The names of every listing key of everyone in the database, found by a scan of the keyspace.
fn all_keys(ctx: &Context) -> Vec<Vec<u8>> {
    let found = std::cell::RefCell::new(Vec::new());
    let cursor = redis_module::KeysCursor::new();
    let collect = |_: &Context, name: &RedisString, _: Option<&redis_module::key::RedisKey>| {
        if let Some((_, None)) = keys::parse_listing_key(name.as_slice()) {
            found.borrow_mut().push(name.as_slice().to_vec());
        }
    };
    while cursor.scan(ctx, &collect) {}
    found.into_inner()
}
