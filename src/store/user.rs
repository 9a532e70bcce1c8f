//! A user's record: its hash, with each device's deadline in the slot's due index and the user's
//! own timer in the slot's timers set, read and written as one.

use super::effect::{self, Effect};
use super::{listings, now, vanished};
use crate::codec::{self, Changes};
use crate::model::{Millis, Presence, Record, Rules, Span};
use crate::server::Key;
use crate::{config, deadlines, events, keys, stats};
use redis_module::{raw, Context, RedisError};

/// The keys of one user: the record's hash and the slot's due index.
struct UserKeys {
    slot: u16,
    /// The slot's timers set, opened for writes that may move the user's own timer.
    timers: Option<Key>,
    record: Key,
    due: Key,
}

impl UserKeys {
    /// Opens the keys and checks their types before anything else happens.
    fn open(
        ctx: &Context,
        user: &[u8],
        write_record: bool,
        write_due: bool,
    ) -> Result<UserKeys, RedisError> {
        let record = Key::open(ctx, &keys::user_key(user), write_record);
        record.check_type(raw::KeyType::Hash)?;
        let slot = keys::slot(user);
        let due = Key::open(ctx, &keys::due_key(slot), write_due);
        due.check_type(raw::KeyType::ZSet)?;
        let timers = if write_record && write_due {
            let key = Key::open(ctx, &keys::timers_key(slot), true);
            key.check_type(raw::KeyType::ZSet)?;
            Some(key)
        } else {
            None
        };
        Ok(UserKeys {
            slot,
            timers,
            record,
            due,
        })
    }

    /// The user's record at `now`: the hash's fields, with each device's deadline from the index.
    fn read(&self, user: &[u8], with_meta: bool, now: Millis) -> Record {
        let mut decoder = codec::Decoder::new(with_meta);
        self.record
            .scan_hash(|field, value| decoder.field(field, value));
        let deadline = |device: &[u8]| {
            self.due
                .zset_score(&keys::due_member(user, device))
                .map(|score| score as Millis)
        };
        decoder.finish(deadline, now)
    }
}

/// The settings that decide how records change, as configured now.
pub fn rules() -> Rules {
    Rules {
        device_events: config::device_events(),
        away_after: config::away_after(),
        grace: config::grace(),
        manual_ends_offline: !config::keep_manual_status(),
        activity_ends_away: config::activity_ends_away(),
    }
}

/// A user's record as stored, read at `now` under the configured rules; device META only when
/// asked for.
pub fn read(
    ctx: &Context,
    user: &[u8],
    with_meta: bool,
    now: Millis,
) -> Result<Presence, RedisError> {
    let record = UserKeys::open(ctx, user, false, false)?.read(user, with_meta, now);
    Ok(Presence::to_show(record, rules()))
}

/// A user's record as stored, for what the listings need of it (status, activity, rooms): read
/// without settling and without the devices' deadlines (which do not change where the record
/// lists the user). `None` when there is none (or the key holds another type).
pub fn stored_for_listings(ctx: &Context, user: &[u8], now: Millis) -> Option<Record> {
    let record = Key::open(ctx, &keys::user_key(user), false);
    if record.kind() != raw::KeyType::Hash {
        return None;
    }
    let mut decoder = codec::Decoder::new(true);
    record.scan_hash(|field, value| decoder.field(field, value));
    Some(decoder.finish(|_| None, now))
}

/// The hot path of HEARTBEAT: a connected device keeping its TTL only moves its deadline, one
/// index entry and one replicated `ZADD`. Devices of the user that expired meanwhile are left to
/// the sweep (reads already ignore them). Returns false, having changed nothing, when the device
/// is not connected or gets a new TTL: the general path handles those.
pub fn heartbeat_connected(
    ctx: &Context,
    user: &[u8],
    device: &[u8],
    new_ttl: Option<Span>,
) -> Result<bool, RedisError> {
    effect::check_writable(ctx)?;
    let keys = UserKeys::open(ctx, user, false, true)?;
    let now = now();
    let Some((_, ttl, _)) = keys
        .record
        .hash_get(&codec::device_field(device))
        .and_then(|value| codec::parse_device_value(value.as_slice()))
    else {
        return Ok(false);
    };
    if new_ttl.is_some_and(|t| t != ttl) {
        return Ok(false);
    }
    let member = keys::due_member(user, device);
    match keys.due.zset_score(&member) {
        Some(deadline) if (deadline as Millis) > now => {}
        _ => return Ok(false),
    }
    let deadline = ttl.after(now);
    effect::apply(ctx, &keys.due, Effect::ZAdd(&[(deadline, member)]));
    Ok(true)
}

/// A user's record opened for a write at a moment `now`, already settled (devices past their
/// deadline removed): change `presence`, then [`commit`](UserWrite::commit).
pub struct UserWrite {
    pub now: Millis,
    /// The score of the user's own timer in the index, as stored.
    stored_timer: Option<Millis>,
    /// Devices the settling removed.
    pub timed_out: usize,
    user: Vec<u8>,
    keys: UserKeys,
    before: Record,
    pub presence: Presence,
}

impl UserWrite {
    /// Opens every key a write to `user` may touch, checks their types before anything changes,
    /// and settles the record at the server's current time. Transitions announce device-level
    /// events as the `device-events` setting says.
    pub fn open(ctx: &Context, user: &[u8]) -> Result<UserWrite, RedisError> {
        let write = UserWrite::open_settling_at_most(ctx, user, usize::MAX)?;
        listings::check_type(ctx, write.keys.slot)?;
        Ok(write)
    }

    /// As [`open`](UserWrite::open), settling no more than `max_timeouts` devices (the sweep's
    /// budget; the rest stay due), and without checking the listing keys' types first (the
    /// sweep's writes skip a listing key of another type: the record stays right).
    pub fn open_settling_at_most(
        ctx: &Context,
        user: &[u8],
        max_timeouts: usize,
    ) -> Result<UserWrite, RedisError> {
        effect::check_writable(ctx)?;
        let keys = UserKeys::open(ctx, user, true, true)?;
        let now = now();
        let before = keys.read(user, true, now);
        let stored_timer = keys
            .timers
            .as_ref()
            .and_then(|timers| timers.zset_score(user).map(|score| score as Millis));
        let mut presence = Presence::new(before.clone(), rules());
        let timed_out = presence.settle_at_most(now, max_timeouts);
        Ok(UserWrite {
            now,
            stored_timer,
            timed_out,
            user: user.to_vec(),
            keys,
            presence,
            before,
        })
    }

    /// The record as it was stored, before settling.
    pub fn before(&self) -> &Record {
        &self.before
    }

    /// Writes what changed in `record` (hash fields, index entries, listings, the record's
    /// expiry) and publishes the record's events.
    pub fn commit(self, ctx: &Context) {
        self.write(ctx, false);
    }

    /// As [`commit`](UserWrite::commit), checking the listings and the TTL against what is
    /// stored, not only against the record before (the reconciliation's writes: something other
    /// than the module may have changed them). Whether anything had to change.
    pub fn repair(self, ctx: &Context) -> bool {
        self.write(ctx, true)
    }

    fn write(mut self, ctx: &Context, repair: bool) -> bool {
        if !self.presence.is_empty() {
            vanished::has_record(&self.user);
        }
        stats::TIMEOUTS.add(self.timed_out as i64);
        let (before, after) = (self.before.devices.len(), self.presence.devices.len());
        let slot = self.keys.slot;
        stats::DEVICES_ONLINE.add(slot, after as i64 - before as i64);
        stats::USERS_ONLINE.add(slot, i64::from(after > 0) - i64::from(before > 0));
        let changes = codec::changes(&self.before, &self.presence);
        self.write_fields(ctx, &changes);
        self.write_due(ctx, &changes);
        self.write_listings(ctx, &changes);
        self.write_timer(ctx);
        let mut repaired = self.write_expiry(ctx, repair);
        if repair {
            repaired |= self.write_listings_as_recorded(ctx);
            repaired |= self.timed_out > 0 || self.presence.record != self.before;
            if repaired {
                stats::REPAIRS.add(1);
            }
        }
        events::publish(ctx, &self.user, &self.presence.take_events());
        events::publish_rooms(ctx, &self.user, &self.presence.take_room_events());
        repair && repaired
    }

    /// Puts the user in the listings the record says (everyone, at the record's score, and
    /// its rooms) whatever they held; out of the listing of everyone if not listed. Whether the
    /// listing of everyone had to change.
    fn write_listings_as_recorded(&self, ctx: &Context) -> bool {
        let slot = self.keys.slot;
        listings::rooms_as_recorded(ctx, slot, &self.user, Some(&self.presence));
        listings::set(ctx, slot, &self.user, self.presence.listed())
    }

    fn write_fields(&self, ctx: &Context, changes: &Changes) {
        effect::apply(ctx, &self.keys.record, Effect::HashSet(&changes.set));
        effect::apply(ctx, &self.keys.record, Effect::HashDel(&changes.delete));
    }

    fn write_due(&self, ctx: &Context, changes: &Changes) {
        let set: Vec<(Millis, Vec<u8>)> = changes
            .due_set
            .iter()
            .map(|(device, deadline)| {
                deadlines::note(self.keys.slot, *deadline);
                (*deadline, keys::due_member(&self.user, device))
            })
            .collect();
        effect::apply(ctx, &self.keys.due, Effect::ZAdd(&set));
        let gone: Vec<Vec<u8>> = changes
            .due_delete
            .iter()
            .map(|device| keys::due_member(&self.user, device))
            .collect();
        effect::apply(ctx, &self.keys.due, Effect::ZRem(&gone));
    }

    /// Keeps the user's entry in the slot's listing of everyone, and their places in the rooms'
    /// listings, in step with the record.
    fn write_listings(&self, ctx: &Context, changes: &Changes) {
        let slot = self.keys.slot;
        for (scope, score) in &changes.listed_set {
            if scope.is_none() {
                listings::set(ctx, slot, &self.user, Some(*score));
            }
        }
        if changes.listed_delete.contains(&None) {
            listings::set(ctx, slot, &self.user, None);
        }
        listings::move_in_rooms(slot, &self.user, &self.before, &self.presence);
    }

    /// Keeps the user's own timer in the slot's timers set. It is compared with what is stored,
    /// not with the record before: its score may depend on a setting (`grace`) that changed
    /// since it was written.
    fn write_timer(&self, ctx: &Context) {
        let Some(timers) = &self.keys.timers else {
            return;
        };
        match (self.presence.user_timer(), self.stored_timer) {
            (Some(at), stored) if stored != Some(at) => {
                deadlines::note(self.keys.slot, at);
                effect::apply(ctx, timers, Effect::ZAdd(&[(at, self.user.clone())]));
            }
            (None, Some(_)) => {
                effect::apply(ctx, timers, Effect::ZRem(std::slice::from_ref(&self.user)));
            }
            _ => {}
        }
    }

    /// The record lives without TTL while devices are connected, and for `retention` after the
    /// user went offline. What the stored TTL should be follows from the record before the write,
    /// so nothing is read to keep it in step (unless repairing: then the stored TTL is compared).
    fn write_expiry(&self, ctx: &Context, repair: bool) -> bool {
        let retention = config::retention();
        let (was, will) = (
            self.before.expires_at(retention, self.now),
            self.presence.expires_at(retention, self.now),
        );
        let key = &self.keys.record;
        if self.presence.is_empty() || will.is_some_and(|at| at <= self.now) {
            // Nothing left to keep, or retention already ran out.
            return key.kind() != raw::KeyType::Empty && effect::apply(ctx, key, Effect::Delete);
        }
        let unchanged = if repair {
            key.expire_at() == will
        } else {
            was == will && !self.before.is_empty()
        };
        if unchanged {
            return false;
        }
        match will {
            Some(at) => effect::apply(ctx, key, Effect::ExpireAt(at)),
            None => effect::apply(ctx, key, Effect::Persist),
        }
    }
}
