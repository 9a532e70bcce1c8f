//! What the sweep and the reconciliation do when the keys disagree: an index entry whose device the
//! record lacks, a listed user whose record is gone, a record whose entries or TTL drifted.

use super::index::exists;
use super::user::{self, UserWrite};
use super::{listings, now, vanished};
use crate::model::{Millis, Presence};
use crate::{events, keys, stats};
use redis_module::Context;

/// The sweep met `device` of `user` in the slot's due index at deadline `at`: settles the user
/// (removing every device past its deadline, announced) and, when the record does not have that
/// device (it was deleted, evicted or edited), announces the device's timeout as of `at` all
/// the same. A user whose record is gone is not written back (a deleted record stays deleted):
/// the event is published and the user leaves the slot's listings. Returns the devices removed
/// or announced; the caller removes the index entry.
pub fn settle_due_device(
    ctx: &Context,
    slot: u16,
    user: &[u8],
    device: &[u8],
    at: Millis,
    max_timeouts: usize,
) -> usize {
    let Ok(mut write) = UserWrite::open_settling_at_most(ctx, user, max_timeouts.max(1)) else {
        return 0;
    };
    if write.presence.devices.contains_key(device) || write.before().devices.contains_key(device) {
        let gone = write.timed_out;
        write.commit(ctx);
        return gone;
    }
    if write.before().is_empty() {
        drop(write);
        return announce_vanished(ctx, slot, user, device, at);
    }
    write.presence.lost(device, at);
    let lost = write.presence.settle(write.now);
    stats::REPAIRS.add(1);
    write.timed_out += lost;
    let gone = write.timed_out;
    write.commit(ctx);
    gone
}

/// A user whose record is gone (deleted, evicted, expired) still had `device` (empty: unknown)
/// in an index or listing: announces them offline, as timed out at `at`, once, and takes them out
/// of the slot's listings. Nothing is written back: a deleted record stays deleted. Returns the
/// devices announced.
pub fn announce_vanished(
    ctx: &Context,
    slot: u16,
    user: &[u8],
    device: &[u8],
    at: Millis,
) -> usize {
    listings::forget(ctx, slot, user);
    if !vanished::first_announcement(user) {
        return 0;
    }
    let mut presence = Presence::with_rules(user::rules());
    presence.lost(device, at);
    let lost = presence.settle(now().max(at));
    stats::TIMEOUTS.add(lost as i64);
    stats::REPAIRS.add(1);
    events::publish(ctx, user, &presence.take_events());
    lost
}

/// Settles `user` and makes their index entries, listings and TTL what the record says (the
/// reconciliation's visit of a record). Whether anything had to change.
pub fn reconcile_user(ctx: &Context, user: &[u8]) -> bool {
    UserWrite::open(ctx, user).is_ok_and(|write| write.repair(ctx))
}

/// Checks one entry of a slot's listing of everyone against the member's record, and takes it
/// out or corrects it when the record does not explain it (a user whose record was deleted or
/// evicted, a member written by hand). Whether it had to change anything.
pub fn reconcile_listing_entry(
    ctx: &Context,
    slot: u16,
    member: &[u8],
    score: Millis,
    now: Millis,
) -> bool {
    let own_slot = keys::slot(member) == slot;
    let wanted = |ctx: &Context| -> Option<Millis> {
        if !own_slot {
            return None;
        }
        user::read(ctx, member, false, now).ok()?.listed()
    };
    if wanted(ctx) == Some(score) {
        return false;
    }
    if own_slot && !exists(ctx, &keys::user_key(member)) {
        // Listed, but the record is gone: announced offline (once), out of every listing.
        announce_vanished(ctx, slot, member, b"", now);
        listings::set(ctx, slot, member, None);
        return true;
    }
    if own_slot {
        reconcile_user(ctx, member);
    }
    listings::set(ctx, slot, member, wanted(ctx));
    stats::REPAIRS.add(1);
    true
}
