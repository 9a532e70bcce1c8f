//! The per-slot listings of online users (everyone's, and one per scope), scored by last activity,
//! and the in-memory directory that counts and pages them.

use super::effect::{self, Effect};
use crate::listing::{self, Position};
use crate::model::Millis;
use crate::server::Key;
use crate::{config, deadlines, keys};
use redis_module::{raw, Context, RedisError, RedisString};

/// WRONGTYPE if the slot's listing of everyone, or of one of `rooms` (scopes included), is a key
/// of another type than a sorted set (a write would leave the user out of it).
pub fn check_types<'a>(
    ctx: &Context,
    slot: u16,
    rooms: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), RedisError> {
    let everyone = std::iter::once(keys::listing_key(slot, None));
    let each_scope = rooms
        .into_iter()
        .map(|room| keys::listing_key(slot, Some(room)));
    for name in everyone.chain(each_scope) {
        Key::open(ctx, &name, false).check_type(raw::KeyType::ZSet)?;
    }
    Ok(())
}

/// Puts `user` in the slot's listing (everyone, or a scope) with `score`, or takes them out
/// (`None`), unless it is so already, and tells the directory exactly what changed (the write's
/// keyspace notification is the module's own, so the directory does not re-read the key).
/// Whether it changed anything. A listing key that a client overwrote with another type is left
/// alone (client writes refuse it first with WRONGTYPE, see [`check_types`]).
pub fn set(
    ctx: &Context,
    slot: u16,
    scope: Option<&[u8]>,
    user: &[u8],
    score: Option<Millis>,
) -> bool {
    let key = Key::open(ctx, &keys::listing_key(slot, scope), true);
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
    listing::directory().replace(scope, slot, old, score);
    if let (None, Some(active)) = (scope, score) {
        // The user may go idle `away-after` from this activity: the sweep looks then.
        let away_after = config::away_after();
        if away_after.is_positive() {
            deadlines::note(slot, away_after.after(active));
        }
    }
    true
}

/// Takes `user` out of every listing of `slot` (everyone, and each scope the directory knows
/// there): their record is gone. Users absent from the listing of everyone are in no scope's
/// either, so that is the only key read for most. Whether they were listed.
pub fn forget(ctx: &Context, slot: u16, user: &[u8]) -> bool {
    let everyone = Key::open(ctx, &keys::listing_key(slot, None), false);
    if everyone.zset_score(user).is_none() {
        return false;
    }
    drop(everyone);
    set(ctx, slot, None, user, None);
    let scopes = listing::directory().scopes_in_slot(slot);
    for scope in scopes {
        set(ctx, slot, Some(&scope), user, None);
    }
    true
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

/// The first member of a slot's listing after `bound` (from the top when `None`).
pub fn next(
    ctx: &Context,
    slot: u16,
    scope: Option<&[u8]>,
    bound: Option<&Position>,
) -> Option<Position> {
    let key = Key::open(ctx, &keys::listing_key(slot, scope), false);
    key.zset_first_below(bound.map(|b| (b.last_active as f64, b.user.as_slice())))
        .map(|(user, score)| Position {
            last_active: score as Millis,
            user,
        })
}

/// Brings the listing directory up to date with the listing keys changed by other means than the
/// module's writes (see `listing::mark_dirty`). Called before the directory is read.
pub fn refresh_directory(ctx: &Context) {
    listing::refresh(|scope, slot| scores(ctx, &keys::listing_key(slot, scope)));
}

/// Rebuilds the listing directory from the listing keys in the keyspace.
pub fn rebuild_directory(ctx: &Context) {
    listing::clear_dirty();
    let names = all_keys(ctx);
    let mut directory = listing::directory();
    directory.clear();
    for name in names {
        if let Some((slot, scope)) = keys::parse_listing_key(&name) {
            directory.set(scope, slot, scores(ctx, &name));
        }
    }
}

/// The scores of the sorted set `name`, lowest first, as the listing directory keeps them.
fn scores(ctx: &Context, name: &[u8]) -> Vec<Millis> {
    Key::open(ctx, name, false).zset_scores()
}

/// The names of every listing key in the database, found by a scan of the keyspace.
fn all_keys(ctx: &Context) -> Vec<Vec<u8>> {
    let found = std::cell::RefCell::new(Vec::new());
    let cursor = redis_module::KeysCursor::new();
    let collect = |_: &Context, name: &RedisString, _: Option<&redis_module::key::RedisKey>| {
        if keys::parse_listing_key(name.as_slice()).is_some() {
            found.borrow_mut().push(name.as_slice().to_vec());
        }
    };
    while cursor.scan(ctx, &collect) {}
    found.into_inner()
}
