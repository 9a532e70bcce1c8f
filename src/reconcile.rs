//! Reconciliation: the module's keys checked against each other, a slice in each sweep run, so
//! that what vanished or was written without the module (evicted or deleted keys, members added
//! by hand, a record that lost its index entries or its TTL) heals from the keys alone.
//!
//! A pass walks, in order:
//! 1. every slot: its due index (members that name no device are removed; a deadline no heartbeat
//!    could set, more than twice the longest TTL ahead, is treated as due now; the slot's users and devices are recounted for the INFO
//!    gauges), then its listing of everyone: an entry whose member's record does not list them
//!    so is removed or corrected, and the room index's table of the slot keeps only users the
//!    listing holds;
//! 2. every key of the keyspace, with a scan cursor: each user record is settled and its index
//!    entries, listings and TTL are made what the record says (devices that lost their deadline
//!    are announced as timed out); the room listing keys of earlier versions are deleted.
//!
//! Users whose record was deleted, expired or evicted (keyspace notifications) leave the
//! listings on the next run, before the pass goes on; users whose record was restored or edited
//! by other means than the module's writes are put where it says.

use crate::listing::rooms::user_hash;
use crate::model::Millis;
use crate::server::MainThread;
use crate::{args, keys, listing, migration, stats, store};
use redis_module::{Context, KeysCursor, RedisString};
use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Entries read from one sorted set per step.
const BATCH: usize = 64;
/// Most changed records queued for a run to look at; past that a full pass finds them.
const MAX_CHANGED: usize = 100_000;

enum Stage {
    /// The slot's due index.
    Due,
    /// The slot's listing of everyone.
    Listing,
    /// The keyspace scan over records.
    Records,
}

struct Walk {
    slot: u16,
    stage: Stage,
    /// The users of the slot's listing of everyone checked so far, by the room index's hash.
    listed: Vec<u32>,
    /// The last entry checked in the current sorted set.
    after: Option<(f64, Vec<u8>)>,
    /// The due index's users and devices counted so far.
    users: BTreeSet<Vec<u8>>,
    devices: i64,
    records: Option<Cursor>,
}

/// The keyspace scan cursor, held between runs.
type Cursor = MainThread<KeysCursor>;

fn walk() -> MutexGuard<'static, Walk> {
    static WALK: Mutex<Walk> = Mutex::new(Walk {
        slot: 0,
        stage: Stage::Due,
        listed: Vec::new(),
        after: None,
        users: BTreeSet::new(),
        devices: 0,
        records: None,
    });
    WALK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn changed() -> MutexGuard<'static, BTreeSet<Vec<u8>>> {
    static CHANGED: Mutex<BTreeSet<Vec<u8>>> = Mutex::new(BTreeSet::new());
    CHANGED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A user's record changed by other means than the module's writes (deleted, expired, evicted,
/// restored, edited by hand): soon, the user is taken out of the listings if it is gone, or put
/// where the record says.
pub fn record_changed(user: &[u8]) {
    let mut queue = changed();
    if queue.len() < MAX_CHANGED {
        queue.insert(user.to_vec());
    }
}

/// Starts the pass over: the keyspace was replaced (loading, flush, SWAPDB, promotion).
pub fn restart() {
    let mut walk = walk();
    walk.slot = 0;
    walk.stage = Stage::Due;
    walk.after = None;
    walk.users.clear();
    walk.listed.clear();
    walk.devices = 0;
    walk.records = None;
    changed().clear();
    store::vanished::forget_all();
}

/// Frees what the walk holds (the module is unloaded).
pub fn release() {
    let mut walk = walk();
    walk.records = None;
    walk.users = BTreeSet::new();
    walk.listed = Vec::new();
    *changed() = BTreeSet::new();
}

/// Does up to `budget` units of reconciliation (an entry or a record checked, an empty slot
/// passed), stopping at `until`. Returns the units spent.
pub fn run(ctx: &Context, now: Millis, budget: usize, until: Option<Instant>) -> usize {
    let mut spent = 0;
    let out_of_time = || until.is_some_and(|until| Instant::now() >= until);
    while spent < budget && !out_of_time() {
        let Some(user) = changed().pop_first() else {
            break;
        };
        let slot = keys::slot(&user);
        spent += 1;
        if migration::importing(slot) {
            continue;
        }
        if store::index::exists(ctx, &keys::user_key(&user)) {
            store::repair::reconcile_user(ctx, &user);
        } else if store::listings::forget(ctx, slot, &user) {
            // Gone, and was listed: the user was online when the record went. Named by one of
            // its devices when the slot's index (looked at briefly) has one.
            let device = store::index::device_of(ctx, slot, &user, 256).unwrap_or_default();
            store::repair::announce_vanished(ctx, slot, &user, &device, now);
        }
    }
    let mut walk = walk();
    while spent < budget && !out_of_time() {
        spent += step(ctx, &mut walk, now);
    }
    spent
}

/// One step of the walk; the units it spent.
fn step(ctx: &Context, walk: &mut Walk, now: Millis) -> usize {
    // A slot being imported is not this node's yet (see `migration`): passed over.
    if !matches!(walk.stage, Stage::Records) && migration::importing(walk.slot) {
        walk.after = None;
        walk.users.clear();
        walk.devices = 0;
        walk.stage = next_slot(walk.slot, walk);
        return 1;
    }
    match walk.stage {
        Stage::Due => {
            let name = keys::due_key(walk.slot);
            let batch = store::index::members_after(ctx, &name, walk.after.as_ref(), BATCH);
            let done = batch.len() < BATCH;
            let spent = batch.len().max(1);
            for (member, score) in batch {
                check_due_entry(ctx, walk, &name, &member, score, now);
                walk.after = Some((score, member));
            }
            if done {
                let slot = walk.slot;
                stats::DEVICES_ONLINE.set(slot, walk.devices);
                stats::USERS_ONLINE.set(slot, walk.users.len() as i64);
                walk.users.clear();
                walk.devices = 0;
                walk.after = None;
                walk.stage = Stage::Listing;
            }
            spent
        }
        Stage::Listing => {
            let slot = walk.slot;
            let name = keys::listing_key(slot, None);
            let batch = store::index::members_after(ctx, &name, walk.after.as_ref(), BATCH);
            let done = batch.len() < BATCH;
            let spent = batch.len().max(1);
            for (member, score) in batch {
                store::repair::reconcile_listing_entry(ctx, slot, &member, score as Millis, now);
                walk.listed.push(user_hash(&member));
                walk.after = Some((score, member));
            }
            if done {
                if walk.after.is_some() {
                    // The directory's copy of this key is read again too: it heals from the
                    // keys alone, whatever it missed.
                    listing::mark_dirty(slot);
                }
                // Entries of the room index that no user of the listing explains (the records
                // of those it does are checked by the record scan).
                let mut listed = std::mem::take(&mut walk.listed);
                listed.sort_unstable();
                let removed = listing::room_index()
                    .retain_slot(slot, |hash| listed.binary_search(&hash).is_ok());
                stats::REPAIRS.add(removed as i64);
                walk.after = None;
                walk.stage = next_slot(slot, walk);
            }
            spent
        }
        Stage::Records => {
            let cursor = walk
                .records
                .get_or_insert_with(|| MainThread(KeysCursor::new()));
            let mut users: Vec<Vec<u8>> = Vec::new();
            let mut legacy: Vec<Vec<u8>> = Vec::new();
            // Keys are only collected during the scan: it must not write.
            let collect =
                |_: &Context, name: &RedisString, _: Option<&redis_module::key::RedisKey>| {
                    let name = name.as_slice();
                    if let Some(user) = keys::parse_user_key(name) {
                        users.push(user.to_vec());
                    } else if let Some((_, Some(_))) = keys::parse_listing_key(name) {
                        legacy.push(name.to_vec());
                    }
                };
            let more = cursor.0.scan(ctx, &collect);
            let spent = 1 + 2 * users.len() + legacy.len();
            for name in legacy {
                // A room's listing key, as versions before the in-memory room index kept them.
                store::index::delete(ctx, &name);
            }
            for user in users {
                if !migration::importing(keys::slot(&user)) {
                    store::repair::reconcile_user(ctx, &user);
                }
            }
            if !more {
                walk.records = None;
                walk.slot = 0;
                walk.stage = Stage::Due;
                stats::RECONCILE_PASSES.add(1);
            }
            spent
        }
    }
}

/// The stage after `slot`'s: the next slot's due index, or the records after the last slot.
fn next_slot(slot: u16, walk: &mut Walk) -> Stage {
    if usize::from(slot) + 1 < keys::SLOTS {
        walk.slot = slot + 1;
        Stage::Due
    } else {
        Stage::Records
    }
}

/// One entry of a slot's due index: removed if it names no device, settled now if its deadline
/// is one no heartbeat sets; else counted.
fn check_due_entry(
    ctx: &Context,
    walk: &mut Walk,
    name: &[u8],
    member: &[u8],
    score: f64,
    now: Millis,
) {
    // A member that names no device, or a user of another slot (whose keys are not here).
    let Some((user, device)) =
        keys::parse_due_member(member).filter(|(user, _)| keys::slot(user) == walk.slot)
    else {
        store::index::drop_entry_if_due(ctx, name, member, None);
        stats::REPAIRS.add(1);
        return;
    };
    // Beyond what the record's decoding accepts for any TTL (see `codec::Decoder::finish`), so
    // settling the user removes the device and its entry together.
    if score > now.saturating_add(2 * args::MAX_TTL) as f64 {
        store::repair::settle_due_device(ctx, walk.slot, user, device, now, usize::MAX);
        store::index::drop_entry_if_due(ctx, name, member, None);
        stats::REPAIRS.add(1);
        return;
    }
    walk.devices += 1;
    if !walk.users.contains(user) {
        walk.users.insert(user.to_vec());
    }
}
