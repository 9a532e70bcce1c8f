//! The per-slot due index (each device's deadline) and timers set (each user's own timer: the end
//! of a manual status or a grace period), as the sweep and the reconciliation read them.

use super::effect::{self, Effect};
use crate::model::Millis;
use crate::server::Key;
use crate::{keys, stats};
use redis_module::{raw, Context};

/// An entry of a slot's indexes that may be due.
pub enum DueEntry {
    /// A device's member in the due index, and its deadline.
    Device(Vec<u8>, Millis),
    /// A user in the timers set.
    Timer(Vec<u8>),
}

/// Up to `limit` entries of the slot's due index, then of its timers set, whose time is at or
/// before `until`, earliest first within each.
pub fn due_entries(ctx: &Context, slot: u16, until: Millis, limit: usize) -> Vec<DueEntry> {
    let due = Key::open(ctx, &keys::due_key(slot), false);
    let mut out: Vec<DueEntry> = due
        .zset_after(None, until as f64, limit)
        .into_iter()
        .map(|(member, score)| DueEntry::Device(member, score as Millis))
        .collect();
    if out.len() < limit {
        let timers = Key::open(ctx, &keys::timers_key(slot), false);
        out.extend(
            timers
                .zset_after(None, until as f64, limit - out.len())
                .into_iter()
                .map(|(user, _)| DueEntry::Timer(user)),
        );
    }
    out
}

/// The earliest time in the slot's due index and timers set, if they hold anything.
pub fn next_due(ctx: &Context, slot: u16) -> Option<Millis> {
    [keys::due_key(slot), keys::timers_key(slot)]
        .iter()
        .filter_map(|name| {
            Key::open(ctx, name, false)
                .zset_after(None, f64::INFINITY, 1)
                .first()
                .map(|(_, score)| *score as Millis)
        })
        .min()
}

/// Removes `member` from the sorted set `name` (a slot's due index or timers set) if it is still
/// due at `now` (any time, when `None`): an entry that no record explains (a malformed member, or
/// one whose user's hash was deleted or overwritten by hand), which the sweep would otherwise
/// meet again and again.
pub fn drop_entry_if_due(ctx: &Context, name: &[u8], member: &[u8], now: Option<Millis>) {
    let key = Key::open(ctx, name, true);
    if key.kind() != raw::KeyType::ZSet {
        return;
    }
    if key
        .zset_score(member)
        .is_some_and(|score| now.is_none_or(|now| score as Millis <= now))
    {
        effect::apply(ctx, &key, Effect::ZRem(&[member.to_vec()]));
    }
}

/// A device of `user` in the slot's due index, looked for among its first `limit` entries.
pub fn device_of(ctx: &Context, slot: u16, user: &[u8], limit: usize) -> Option<Vec<u8>> {
    let due = Key::open(ctx, &keys::due_key(slot), false);
    let mut found = None;
    let mut left = limit;
    due.zset_walk(f64::NEG_INFINITY, f64::INFINITY, false, |member, _| {
        if let Some((owner, device)) = keys::parse_due_member(member) {
            if owner == user {
                found = Some(device.to_vec());
            }
        }
        left = left.saturating_sub(1);
        found.is_none() && left > 0
    });
    found
}

/// Up to `limit` members of the sorted set `name` after `after` (score, then member, ascending;
/// from the start when `None`), lowest first.
pub fn members_after(
    ctx: &Context,
    name: &[u8],
    after: Option<&(f64, Vec<u8>)>,
    limit: usize,
) -> Vec<(Vec<u8>, f64)> {
    Key::open(ctx, name, false).zset_after(
        after.map(|(score, member)| (*score, member.as_slice())),
        f64::INFINITY,
        limit,
    )
}

/// Deletes the key `name`, replicated.
pub fn delete(ctx: &Context, name: &[u8]) {
    let key = Key::open(ctx, name, true);
    if key.kind() != raw::KeyType::Empty {
        effect::apply(ctx, &key, Effect::Delete);
    }
}

/// Whether the key `name` exists.
pub fn exists(ctx: &Context, name: &[u8]) -> bool {
    Key::open(ctx, name, false).kind() != raw::KeyType::Empty
}

/// Counts the users with registered devices and their devices in every slot, from the due
/// indexes, and sets the gauges.
pub fn census(ctx: &Context) {
    for slot in 0..keys::SLOTS as u16 {
        let key = Key::open(ctx, &keys::due_key(slot), false);
        let entries = key.zset_after(None, f64::INFINITY, usize::MAX);
        let mut seen: Vec<&[u8]> = entries
            .iter()
            .filter_map(|(member, _)| keys::parse_due_member(member).map(|(user, _)| user))
            .filter(|user| keys::slot(user) == slot)
            .collect();
        stats::DEVICES_ONLINE.set(slot, seen.len() as i64);
        seen.sort_unstable();
        seen.dedup();
        stats::USERS_ONLINE.set(slot, seen.len() as i64);
    }
}
