//! All key access: the user hashes and the per-slot due indexes, read and written through the
//! low-level key API, with every write replicated as explicit effects (absolute timestamps, no
//! clock reads on replicas) and announced as keyspace events.

use crate::codec::{self, Changes};
use crate::listing::{self, Position};
use crate::model::{Audience, Millis, Privacy, Record};
use crate::{config, events, keys, stats, sweep};
use redis_module::{raw, Context, ContextFlags, NotifyEvent, RedisError, RedisString};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::ptr;

/// The module's time, in milliseconds since the epoch (see `clock`).
pub fn now() -> Millis {
    crate::clock::now()
}

/// Presence changes only on a master, whose sweep keeps it: a writable replica
/// (`replica-read-only no`) would take writes that no sweep ever expires, and publish events that
/// no consumer expects from it.
fn refuse_on_replica(ctx: &Context) -> Result<(), RedisError> {
    if ctx.get_flags().contains(ContextFlags::SLAVE) {
        return Err(RedisError::Str(
            "READONLY presence is written on the master only (this server is a replica)",
        ));
    }
    Ok(())
}

/// A number as decimal text, as replicated in commands.
fn itoa(n: Millis) -> String {
    n.to_string()
}

fn string(bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(ptr::null_mut(), bytes)
}

/// An open key, closed when dropped.
struct Key {
    ptr: *mut raw::RedisModuleKey,
}

impl Key {
    fn open(ctx: &Context, name: &RedisString, write: bool) -> Key {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        // SAFETY: ctx and name are valid for the duration of the command.
        let ptr = unsafe {
            raw::RedisModule_OpenKey.unwrap_unchecked()(ctx.get_raw(), name.inner, mode as c_int)
        };
        Key { ptr: ptr.cast() }
    }

    fn kind(&self) -> raw::KeyType {
        if self.ptr.is_null() {
            return raw::KeyType::Empty;
        }
        // SAFETY: an open key.
        let kind = unsafe { raw::RedisModule_KeyType.unwrap_unchecked()(self.ptr) };
        raw::KeyType::from(kind)
    }

    /// Fails with WRONGTYPE unless the key is missing or of the `expected` type.
    fn check_type(&self, expected: raw::KeyType) -> Result<(), RedisError> {
        match self.kind() {
            raw::KeyType::Empty => Ok(()),
            kind if kind == expected => Ok(()),
            _ => Err(RedisError::WrongType),
        }
    }

    /// Calls `visit` with every field and value of a hash key, without copying them.
    fn scan_hash(&self, mut visit: impl FnMut(&[u8], &[u8])) {
        unsafe extern "C" fn each(
            _key: *mut raw::RedisModuleKey,
            field: *mut raw::RedisModuleString,
            value: *mut raw::RedisModuleString,
            data: *mut c_void,
        ) {
            // SAFETY: `data` is the visitor passed below; field and value live during the call.
            let visit = unsafe { &mut *data.cast::<&mut dyn FnMut(&[u8], &[u8])>() };
            if !field.is_null() && !value.is_null() {
                visit(
                    RedisString::string_as_slice(field),
                    RedisString::string_as_slice(value),
                );
            }
        }
        if self.kind() != raw::KeyType::Hash {
            return;
        }
        let mut visitor: &mut dyn FnMut(&[u8], &[u8]) = &mut visit;
        // SAFETY: a cursor is created, used on an open hash key, and destroyed.
        unsafe {
            let cursor = raw::RedisModule_ScanCursorCreate.unwrap_unchecked()();
            let scan = raw::RedisModule_ScanKey.unwrap_unchecked();
            while scan(
                self.ptr,
                cursor,
                Some(each),
                ptr::addr_of_mut!(visitor).cast::<c_void>(),
            ) != 0
            {}
            raw::RedisModule_ScanCursorDestroy.unwrap_unchecked()(cursor);
        }
    }

    /// One field of a hash key.
    fn hash_get(&self, field: &[u8]) -> Option<RedisString> {
        if self.kind() != raw::KeyType::Hash {
            return None;
        }
        let field = string(field);
        let mut value: *mut raw::RedisModuleString = ptr::null_mut();
        // SAFETY: an open hash key; the variadic list ends with NULL; the value string returned
        // is owned by the RedisString that frees it.
        unsafe {
            raw::RedisModule_HashGet.unwrap_unchecked()(
                self.ptr,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                &mut value as *mut *mut raw::RedisModuleString,
                ptr::null_mut::<raw::RedisModuleString>(),
            );
        }
        if value.is_null() {
            return None;
        }
        Some(RedisString::from_redis_module_string(
            ptr::null_mut(),
            value,
        ))
    }

    fn hash_set(&self, field: &[u8], value: &[u8]) {
        let (field, value) = (string(field), string(value));
        // SAFETY: an open writable key; the variadic list ends with NULL.
        unsafe {
            raw::RedisModule_HashSet.unwrap_unchecked()(
                self.ptr,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                value.inner,
                ptr::null_mut::<raw::RedisModuleString>(),
            );
        }
    }

    fn hash_del(&self, field: &[u8]) {
        let field = string(field);
        // SAFETY: as in `hash_set`; the special DELETE value removes the field.
        unsafe {
            raw::RedisModule_HashSet.unwrap_unchecked()(
                self.ptr,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                raw::REDISMODULE_HASH_DELETE,
                ptr::null_mut::<raw::RedisModuleString>(),
            );
        }
    }

    fn zset_score(&self, member: &RedisString) -> Option<f64> {
        if self.kind() != raw::KeyType::ZSet {
            return None;
        }
        let mut score = 0f64;
        // SAFETY: an open sorted-set key.
        let status = unsafe {
            raw::RedisModule_ZsetScore.unwrap_unchecked()(self.ptr, member.inner, &mut score)
        };
        (status == raw::REDISMODULE_OK as c_int).then_some(score)
    }

    fn zset_add(&self, score: f64, member: &RedisString) {
        // SAFETY: an open writable key, empty or a sorted set.
        unsafe {
            raw::RedisModule_ZsetAdd.unwrap_unchecked()(
                self.ptr,
                score,
                member.inner,
                ptr::null_mut(),
            );
        }
    }

    fn zset_rem(&self, member: &RedisString) {
        let mut deleted: c_int = 0;
        // SAFETY: an open writable sorted-set key.
        unsafe {
            raw::RedisModule_ZsetRem.unwrap_unchecked()(self.ptr, member.inner, &mut deleted);
        }
    }

    /// Walks the members with a score from `min` to `max`, upwards or downwards, calling `visit`
    /// with each member and its score until it returns false.
    fn zset_walk(
        &self,
        min: f64,
        max: f64,
        downwards: bool,
        mut visit: impl FnMut(&[u8], f64) -> bool,
    ) {
        if self.kind() != raw::KeyType::ZSet {
            return;
        }
        // SAFETY: a range opened on an open sorted-set key, walked and stopped; each element
        // string is owned by the RedisString that frees it.
        unsafe {
            let started = if downwards {
                raw::RedisModule_ZsetLastInScoreRange.unwrap_unchecked()(self.ptr, min, max, 0, 0)
            } else {
                raw::RedisModule_ZsetFirstInScoreRange.unwrap_unchecked()(self.ptr, min, max, 0, 0)
            };
            if started != raw::REDISMODULE_OK as c_int {
                return;
            }
            loop {
                let mut score = 0f64;
                let element = raw::RedisModule_ZsetRangeCurrentElement.unwrap_unchecked()(
                    self.ptr, &mut score,
                );
                if element.is_null() {
                    break;
                }
                let element = RedisString::from_redis_module_string(ptr::null_mut(), element);
                if !visit(element.as_slice(), score) {
                    break;
                }
                let step = if downwards {
                    raw::RedisModule_ZsetRangePrev.unwrap_unchecked()(self.ptr)
                } else {
                    raw::RedisModule_ZsetRangeNext.unwrap_unchecked()(self.ptr)
                };
                if step == 0 {
                    break;
                }
            }
            raw::RedisModule_ZsetRangeStop.unwrap_unchecked()(self.ptr);
        }
    }

    /// Every score of a sorted-set key, lowest first (none for anything else).
    fn zset_scores(&self) -> Vec<Millis> {
        let mut scores = Vec::new();
        self.zset_walk(f64::NEG_INFINITY, f64::INFINITY, false, |_, score| {
            scores.push(score as Millis);
            true
        });
        scores
    }

    /// Up to `limit` members after `after` (score, then member, both ascending; from the start when
    /// `None`) with a score up to `max`, lowest first.
    fn zset_after(
        &self,
        after: Option<(f64, &[u8])>,
        max: f64,
        limit: usize,
    ) -> Vec<(Vec<u8>, f64)> {
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        let min = after.map_or(f64::NEG_INFINITY, |(score, _)| score);
        self.zset_walk(min, max, false, |member, score| {
            // Equal scores come in ascending member order: skip those up to the position.
            let past = after.is_none_or(|(a_score, a_member)| score > a_score || member > a_member);
            if past {
                out.push((member.to_vec(), score));
            }
            out.len() < limit
        });
        out
    }

    /// The member that comes first walking the sorted set from the highest score down, below
    /// `bound` (score, then member, both descending); from the top when `bound` is `None`.
    fn zset_first_below(&self, bound: Option<(f64, &[u8])>) -> Option<(Vec<u8>, f64)> {
        let max = bound.map_or(f64::INFINITY, |(score, _)| score);
        let mut found = None;
        self.zset_walk(f64::NEG_INFINITY, max, true, |member, score| {
            // Equal scores come in descending member order: skip those at or above the bound.
            let past_bound =
                bound.is_none_or(|(b_score, b_member)| score < b_score || member < b_member);
            if past_bound {
                found = Some((member.to_vec(), score));
            }
            !past_bound
        });
        found
    }

    /// The key's absolute expire time, if it has one.
    fn expire_at(&self) -> Option<Millis> {
        // SAFETY: an open key.
        let at = unsafe { raw::RedisModule_GetAbsExpire.unwrap_unchecked()(self.ptr) };
        (at >= 0).then_some(at)
    }

    fn set_expire_at(&self, at: Millis) {
        // SAFETY: an open writable key that exists.
        unsafe {
            raw::RedisModule_SetAbsExpire.unwrap_unchecked()(self.ptr, at);
        }
    }

    /// Removes the key's TTL; whether it had one.
    fn persist(&self) -> bool {
        if self.expire_at().is_none() {
            return false;
        }
        // SAFETY: an open writable key that exists.
        unsafe {
            raw::RedisModule_SetExpire.unwrap_unchecked()(
                self.ptr,
                raw::REDISMODULE_NO_EXPIRE as i64,
            );
        }
        true
    }

    fn delete(&self) {
        // SAFETY: an open writable key.
        unsafe {
            raw::RedisModule_DeleteKey.unwrap_unchecked()(self.ptr);
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: the key was opened by `Key::open` and is closed once.
            unsafe { raw::RedisModule_CloseKey.unwrap_unchecked()(self.ptr) };
        }
    }
}

/// The keys of one user: the record's hash and the slot's due index.
struct UserKeys {
    slot: u16,
    /// The slot's timers set, opened for writes that may move the user's own timer.
    timers: Option<(RedisString, Key)>,
    name: RedisString,
    key: Key,
    due_name: RedisString,
    due: Key,
}

impl UserKeys {
    /// Opens both keys and checks their types before anything else happens.
    fn open(
        ctx: &Context,
        user: &[u8],
        write_record: bool,
        write_due: bool,
    ) -> Result<UserKeys, RedisError> {
        let name = string(&keys::user_key(user));
        let key = Key::open(ctx, &name, write_record);
        key.check_type(raw::KeyType::Hash)?;
        let slot = keys::slot(user);
        let due_name = string(&keys::due_key(slot));
        let due = Key::open(ctx, &due_name, write_due);
        due.check_type(raw::KeyType::ZSet)?;
        let timers = if write_record && write_due {
            let name = string(&keys::timers_key(slot));
            let key = Key::open(ctx, &name, true);
            key.check_type(raw::KeyType::ZSet)?;
            Some((name, key))
        } else {
            None
        };
        Ok(UserKeys {
            slot,
            timers,
            name,
            key,
            due_name,
            due,
        })
    }

    /// The user's record at `now`: the hash's fields, with each device's deadline from the index.
    fn record(&self, user: &[u8], with_meta: bool, now: Millis) -> Record {
        let mut decoder = codec::Decoder::new(with_meta);
        self.key
            .scan_hash(|field, value| decoder.field(field, value));
        let deadline = |device: &[u8]| {
            self.due
                .zset_score(&string(&keys::due_member(user, device)))
                .map(|score| score as Millis)
        };
        with_settings(decoder.finish(deadline, now))
    }
}

/// `record` under the settings that decide how it changes (not stored: `Record`'s policy fields).
fn with_settings(record: Record) -> Record {
    Record {
        device_events: config::device_events(),
        away_after: config::away_after(),
        grace: config::grace(),
        ..record
    }
}

/// A user's privacy rules (absent fields: everyone).
pub fn read_privacy(ctx: &Context, user: &[u8]) -> Result<Privacy, RedisError> {
    let key = Key::open(ctx, &string(&keys::settings_key(user)), false);
    key.check_type(raw::KeyType::Hash)?;
    let rule = |field: &[u8]| {
        key.hash_get(field)
            .and_then(|v| Audience::parse(v.as_slice()))
            .unwrap_or_default()
    };
    Ok(Privacy {
        online: rule(b"online"),
        last_seen: rule(b"lastseen"),
    })
}

/// Whether `viewer` is among `user`'s contacts.
pub fn is_contact(ctx: &Context, user: &[u8], viewer: &[u8]) -> Result<bool, RedisError> {
    let reply = ctx.call(
        "SISMEMBER",
        &[keys::contacts_key(user).as_slice(), viewer][..],
    )?;
    Ok(reply == redis_module::RedisValue::Integer(1))
}

/// Runs a write on one of `user`'s settings keys (`HSET`, `SADD`, `SREM`) and replicates it as
/// it is: these writes do not depend on the clock.
pub fn settings_write(
    ctx: &Context,
    command: &str,
    args: &[&[u8]],
) -> Result<redis_module::RedisValue, RedisError> {
    refuse_on_replica(ctx)?;
    let options = redis_module::CallOptionsBuilder::new().replicate().build();
    let reply: redis_module::CallResult = ctx.call_ext(command, &options, args);
    reply.map_or_else(|e| Err(e.into()), |v| Ok((&v).into()))
}

/// A user's record as stored, read at `now`; device META only when asked for.
pub fn read_user(
    ctx: &Context,
    user: &[u8],
    with_meta: bool,
    now: Millis,
) -> Result<Record, RedisError> {
    Ok(UserKeys::open(ctx, user, false, false)?.record(user, with_meta, now))
}

/// The hot path of HEARTBEAT: a connected device keeping its TTL only moves its deadline, one
/// index entry and one replicated `ZADD`. Devices of the user that expired meanwhile are left to
/// the sweep (reads already ignore them). Returns false, having changed nothing, when the device
/// is not connected or gets a new TTL: the general path handles those.
pub fn heartbeat_connected(
    ctx: &Context,
    user: &[u8],
    device: &[u8],
    new_ttl: Option<Millis>,
) -> Result<bool, RedisError> {
    refuse_on_replica(ctx)?;
    let keys = UserKeys::open(ctx, user, false, true)?;
    let now = now();
    let Some((_, ttl)) = keys
        .key
        .hash_get(&codec::device_field(device))
        .and_then(|value| codec::parse_device_value(value.as_slice()))
    else {
        return Ok(false);
    };
    if new_ttl.is_some_and(|t| t != ttl) {
        return Ok(false);
    }
    let member = string(&keys::due_member(user, device));
    match keys.due.zset_score(&member) {
        Some(deadline) if (deadline as Millis) > now => {}
        _ => return Ok(false),
    }
    let deadline = now.saturating_add(ttl);
    keys.due.zset_add(deadline as f64, &member);
    let score = string(itoa(deadline).as_bytes());
    ctx.replicate("ZADD", &[&keys.due_name, &score, &member]);
    ctx.notify_keyspace_event(NotifyEvent::ZSET, "zadd", &keys.due_name);
    Ok(true)
}

/// A user's record opened for a write at a moment `now`, already settled (devices past their
/// deadline removed): change `record`, then [`commit`](UserWrite::commit).
pub struct UserWrite {
    pub now: Millis,
    /// The score of the user's own timer in the index, as stored.
    stored_timer: Option<Millis>,
    /// Devices the settling removed.
    pub timed_out: usize,
    user: Vec<u8>,
    keys: UserKeys,
    before: Record,
    pub record: Record,
    /// Check the listings and the TTL against what is stored, not only against the record before
    /// (the reconciliation's writes: something other than the module may have changed them).
    repair: bool,
}

impl UserWrite {
    /// Opens every key a write to `user` may touch, checks their types before anything changes,
    /// and settles the record at the server's current time. Transitions announce device-level
    /// events as the `device-events` setting says.
    pub fn open(ctx: &Context, user: &[u8]) -> Result<UserWrite, RedisError> {
        let write = UserWrite::open_settling_at_most(ctx, user, usize::MAX)?;
        check_listing_types(ctx, write.keys.slot, &write.before.scopes)?;
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
        refuse_on_replica(ctx)?;
        let keys = UserKeys::open(ctx, user, true, true)?;
        let now = now();
        let before = keys.record(user, true, now);
        let stored_timer = keys.timers.as_ref().and_then(|(_, timers)| {
            timers
                .zset_score(&string(user))
                .map(|score| score as Millis)
        });
        let mut record = before.clone();
        let timed_out = record.settle_at_most(now, max_timeouts);
        Ok(UserWrite {
            now,
            stored_timer,
            timed_out,
            user: user.to_vec(),
            keys,
            record,
            before,
            repair: false,
        })
    }

    /// Fails with WRONGTYPE, before anything changes, if a listing key of `scopes` (the user is
    /// about to join them) holds another type.
    pub fn check_scopes(&self, ctx: &Context, scopes: &[Vec<u8>]) -> Result<(), RedisError> {
        check_listing_types(ctx, self.keys.slot, scopes)
    }

    /// Writes what changed in `record` (hash fields, index entries, the record's expiry),
    /// replicates each effect with explicit values, and publishes the record's events.
    pub fn commit(self, ctx: &Context) {
        self.write(ctx);
    }

    /// What [`commit`](UserWrite::commit) does; when repairing, whether the repair had to change
    /// anything.
    fn write(self, ctx: &Context) -> bool {
        if !self.record.is_empty() {
            let mut vanished = vanished_users();
            if !vanished.is_empty() {
                // A record again: should it vanish, the user is announced again.
                vanished.remove(&self.user);
            }
        }
        stats::TIMEOUTS.add(self.timed_out as i64);
        let (before, after) = (self.before.devices.len(), self.record.devices.len());
        let slot = self.keys.slot;
        stats::DEVICES_ONLINE.add(slot, after as i64 - before as i64);
        stats::USERS_ONLINE.add(slot, i64::from(after > 0) - i64::from(before > 0));
        let changes = codec::changes(&self.before, &self.record);
        self.write_fields(ctx, &changes);
        self.write_due(ctx, &changes);
        self.write_listings(ctx, &changes);
        self.write_timer(ctx);
        let mut repaired = self.write_expiry(ctx);
        if self.repair {
            repaired |= self.write_listings_as_recorded(ctx);
            repaired |= self.timed_out > 0 || self.record != self.before;
            if repaired {
                stats::REPAIRS.add(1);
            }
        }
        events::publish(ctx, &self.user, &self.record.events);
        self.repair && repaired
    }

    /// Puts the user in the listings the record says (everyone and each scope, at the record's
    /// score) whatever they held; out of the listing of everyone if not listed. Whether anything
    /// had to change.
    fn write_listings_as_recorded(&self, ctx: &Context) -> bool {
        let member = string(&self.user);
        let slot = self.keys.slot;
        let listings = codec::listings(&self.record);
        let mut changed = false;
        if listings.is_empty() {
            changed |= set_listing(ctx, slot, None, &member, None);
        }
        for (scope, score) in listings {
            changed |= set_listing(ctx, slot, scope, &member, Some(score));
        }
        changed
    }

    fn write_fields(&self, ctx: &Context, changes: &Changes) {
        let (key, name) = (&self.keys.key, &self.keys.name);
        if !changes.set.is_empty() {
            let mut argv: Vec<&[u8]> = Vec::with_capacity(1 + 2 * changes.set.len());
            argv.push(name.as_slice());
            for (field, value) in &changes.set {
                key.hash_set(field, value);
                argv.push(field);
                argv.push(value);
            }
            ctx.replicate("HSET", argv.as_slice());
            ctx.notify_keyspace_event(NotifyEvent::HASH, "hset", name);
        }
        if !changes.delete.is_empty() {
            let mut argv: Vec<&[u8]> = Vec::with_capacity(1 + changes.delete.len());
            argv.push(name.as_slice());
            for field in &changes.delete {
                key.hash_del(field);
                argv.push(field);
            }
            ctx.replicate("HDEL", argv.as_slice());
            ctx.notify_keyspace_event(NotifyEvent::HASH, "hdel", name);
        }
    }

    fn write_due(&self, ctx: &Context, changes: &Changes) {
        let (due, name) = (&self.keys.due, &self.keys.due_name);
        if !changes.due_set.is_empty() {
            let entries: Vec<(RedisString, RedisString)> = changes
                .due_set
                .iter()
                .map(|(device, deadline)| {
                    let member = string(&keys::due_member(&self.user, device));
                    due.zset_add(*deadline as f64, &member);
                    sweep::note_deadline(self.keys.slot, *deadline);
                    (string(itoa(*deadline).as_bytes()), member)
                })
                .collect();
            let mut argv: Vec<&RedisString> = Vec::with_capacity(1 + 2 * entries.len());
            argv.push(name);
            for (score, member) in &entries {
                argv.push(score);
                argv.push(member);
            }
            ctx.replicate("ZADD", argv.as_slice());
            ctx.notify_keyspace_event(NotifyEvent::ZSET, "zadd", name);
        }
        if !changes.due_delete.is_empty() {
            let members: Vec<RedisString> = changes
                .due_delete
                .iter()
                .map(|device| string(&keys::due_member(&self.user, device)))
                .collect();
            let mut argv: Vec<&RedisString> = Vec::with_capacity(1 + members.len());
            argv.push(name);
            for member in &members {
                due.zset_rem(member);
                argv.push(member);
            }
            ctx.replicate("ZREM", argv.as_slice());
            ctx.notify_keyspace_event(NotifyEvent::ZSET, "zrem", name);
        }
    }

    /// Keeps the user's entries in the slot's listings (everyone, and each scope) in step with
    /// the record.
    fn write_listings(&self, ctx: &Context, changes: &Changes) {
        let member = string(&self.user);
        for (scope, score) in &changes.listed_set {
            set_listing(ctx, self.keys.slot, scope.as_deref(), &member, Some(*score));
        }
        for scope in &changes.listed_delete {
            set_listing(ctx, self.keys.slot, scope.as_deref(), &member, None);
        }
    }

    /// Keeps the user's own timer in the slot's timers set. It is compared with what is stored,
    /// not with the record before: its score may depend on a setting (`grace`) that changed
    /// since it was written.
    fn write_timer(&self, ctx: &Context) {
        let Some((name, timers)) = &self.keys.timers else {
            return;
        };
        let member = string(&self.user);
        match (self.record.user_timer(), self.stored_timer) {
            (Some(at), stored) if stored != Some(at) => {
                timers.zset_add(at as f64, &member);
                sweep::note_deadline(self.keys.slot, at);
                ctx.replicate("ZADD", &[name, &string(itoa(at).as_bytes()), &member]);
                ctx.notify_keyspace_event(NotifyEvent::ZSET, "zadd", name);
            }
            (None, Some(_)) => {
                timers.zset_rem(&member);
                ctx.replicate("ZREM", &[name, &member]);
                ctx.notify_keyspace_event(NotifyEvent::ZSET, "zrem", name);
            }
            _ => {}
        }
    }

    /// The record lives without TTL while devices are connected, and for `retention` after the
    /// user went offline. What the stored TTL should be follows from the record before the write,
    /// so nothing is read to keep it in step.
    fn write_expiry(&self, ctx: &Context) -> bool {
        let retention = config::retention();
        let (was, will) = (
            self.before.expires_at(retention, self.now),
            self.record.expires_at(retention, self.now),
        );
        let (key, name) = (&self.keys.key, &self.keys.name);
        if self.record.is_empty() || will.is_some_and(|at| at <= self.now) {
            // Nothing left to keep, or retention already ran out.
            if key.kind() != raw::KeyType::Empty {
                key.delete();
                let _own = listing::OwnWrite::begin();
                ctx.replicate("DEL", &[name.as_slice()]);
                ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", name);
                return true;
            }
            return false;
        }
        let unchanged = if self.repair {
            key.expire_at() == will
        } else {
            was == will && !self.before.is_empty()
        };
        if unchanged {
            return false;
        }
        match will {
            Some(at) => {
                key.set_expire_at(at);
                ctx.replicate("PEXPIREAT", &[name.as_slice(), at.to_string().as_bytes()]);
                ctx.notify_keyspace_event(NotifyEvent::GENERIC, "expire", name);
                true
            }
            None => {
                let had = key.persist();
                if had {
                    ctx.replicate("PERSIST", &[name.as_slice()]);
                    ctx.notify_keyspace_event(NotifyEvent::GENERIC, "persist", name);
                }
                had
            }
        }
    }
}

/// WRONGTYPE if the slot's listing of everyone, or of one of `scopes`, is a key of another type
/// than a sorted set (a write would leave the user out of it).
fn check_listing_types(ctx: &Context, slot: u16, scopes: &[Vec<u8>]) -> Result<(), RedisError> {
    let everyone = std::iter::once(keys::listing_key(slot, None));
    let each_scope = scopes
        .iter()
        .map(|scope| keys::listing_key(slot, Some(scope)));
    for name in everyone.chain(each_scope) {
        Key::open(ctx, &string(&name), false).check_type(raw::KeyType::ZSet)?;
    }
    Ok(())
}

/// Puts `member` in the slot's listing (everyone, or a scope) with `score`, or takes it out
/// (`None`), unless it is so already: tells the directory exactly what changed, then replicates
/// and notifies (the notification is the directory's own news, so it skips re-reading the key).
/// Whether it changed anything. A listing key that a client overwrote with another type is left
/// alone (writes refuse it first with WRONGTYPE, see `UserKeys::open`).
fn set_listing(
    ctx: &Context,
    slot: u16,
    scope: Option<&[u8]>,
    member: &RedisString,
    score: Option<Millis>,
) -> bool {
    let name = string(&keys::listing_key(slot, scope));
    let key = Key::open(ctx, &name, true);
    if key.check_type(raw::KeyType::ZSet).is_err() {
        return false;
    }
    let old = key.zset_score(member).map(|s| s as Millis);
    if old == score {
        return false;
    }
    match score {
        Some(score) => key.zset_add(score as f64, member),
        None => key.zset_rem(member),
    }
    drop(key);
    listing::directory().replace(scope, slot, old, score);
    if let (None, Some(active)) = (scope, score) {
        // The user may go idle `away-after` from this activity: the sweep looks then.
        let away_after = config::away_after();
        if away_after > 0 {
            sweep::note_deadline(slot, active.saturating_add(away_after));
        }
    }
    let _own = listing::OwnWrite::begin();
    match score {
        Some(score) => {
            ctx.replicate("ZADD", &[&name, &string(itoa(score).as_bytes()), member]);
            ctx.notify_keyspace_event(NotifyEvent::ZSET, "zadd", &name);
        }
        None => {
            ctx.replicate("ZREM", &[&name, member]);
            ctx.notify_keyspace_event(NotifyEvent::ZSET, "zrem", &name);
        }
    }
    true
}

/// Takes `user` out of every listing of `slot` (everyone, and each scope the directory knows
/// there): their record is gone. Users absent from the listing of everyone are in no scope's
/// either, so that is the only key read for most.
pub fn forget_listings(ctx: &Context, slot: u16, user: &[u8]) -> bool {
    let member = string(user);
    let everyone = Key::open(ctx, &string(&keys::listing_key(slot, None)), false);
    if everyone.zset_score(&member).is_none() {
        return false;
    }
    drop(everyone);
    set_listing(ctx, slot, None, &member, None);
    let scopes = listing::directory().scopes_in_slot(slot);
    for scope in scopes {
        set_listing(ctx, slot, Some(&scope), &member, None);
    }
    true
}

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
    if write.record.devices.contains_key(device) || write.before.devices.contains_key(device) {
        let gone = write.timed_out;
        write.commit(ctx);
        return gone;
    }
    if write.before.is_empty() {
        drop(write);
        return announce_vanished(ctx, slot, user, device, at);
    }
    write.record.lost(device, at);
    let lost = write.record.settle(write.now);
    stats::REPAIRS.add(1);
    write.timed_out += lost;
    let gone = write.timed_out;
    write.commit(ctx);
    gone
}

/// Users announced offline after their record vanished, until a record of theirs is written
/// again: each is announced once, by whichever of their surviving index or listing entries is met
/// first. At most [`MAX_VANISHED_USERS`] are remembered; past that one may be announced twice.
fn vanished_users() -> std::sync::MutexGuard<'static, std::collections::HashSet<Vec<u8>>> {
    static USERS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>> =
        std::sync::LazyLock::new(Default::default);
    USERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const MAX_VANISHED_USERS: usize = 1_000_000;

/// Forgets which vanished users were announced (the keyspace was replaced).
pub fn forget_vanished_users() {
    *vanished_users() = Default::default();
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
    forget_listings(ctx, slot, user);
    {
        let mut announced = vanished_users();
        if announced.contains(user) {
            return 0;
        }
        if announced.len() >= MAX_VANISHED_USERS {
            announced.clear();
        }
        announced.insert(user.to_vec());
    }
    let mut record = with_settings(Record::default());
    record.lost(device, at);
    let lost = record.settle(now().max(at));
    stats::TIMEOUTS.add(lost as i64);
    stats::REPAIRS.add(1);
    events::publish(ctx, user, &record.events);
    lost
}

/// Settles `user` and makes their index entries, listings and TTL what the record says (the
/// reconciliation's visit of a record). Whether anything had to change.
pub fn reconcile_user(ctx: &Context, user: &[u8]) -> bool {
    let Ok(mut write) = UserWrite::open(ctx, user) else {
        return false;
    };
    write.repair = true;
    write.write(ctx)
}

/// Checks one entry of a slot's listing (`scope` `None`: everyone) against the member's record,
/// and takes it out or corrects it when the record does not explain it (a user whose record was
/// deleted or evicted, a member written by hand). Whether it had to change anything.
pub fn reconcile_listing_entry(
    ctx: &Context,
    slot: u16,
    scope: Option<&[u8]>,
    member: &[u8],
    score: Millis,
    now: Millis,
) -> bool {
    let wanted = |ctx: &Context| -> Option<Millis> {
        if keys::slot(member) != slot {
            return None;
        }
        let record = read_user(ctx, member, false, now).ok()?;
        let in_scope = scope.is_none_or(|scope| record.scopes.iter().any(|s| s == scope));
        record.listed().filter(|_| in_scope)
    };
    if wanted(ctx) == Some(score) {
        return false;
    }
    if keys::slot(member) == slot && !exists(ctx, &keys::user_key(member)) {
        // Listed, but the record is gone: announced offline (once), out of every listing.
        announce_vanished(ctx, slot, member, b"", now);
        set_listing(ctx, slot, scope, &string(member), None);
        return true;
    }
    if keys::slot(member) == slot {
        reconcile_user(ctx, member);
    }
    set_listing(ctx, slot, scope, &string(member), wanted(ctx));
    stats::REPAIRS.add(1);
    true
}

/// A device of `user` in the slot's due index, looked for among its first `limit` entries.
pub fn device_in_due(ctx: &Context, slot: u16, user: &[u8], limit: usize) -> Option<Vec<u8>> {
    let due = Key::open(ctx, &string(&keys::due_key(slot)), false);
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
pub fn zset_members(
    ctx: &Context,
    name: &[u8],
    after: Option<&(f64, Vec<u8>)>,
    limit: usize,
) -> Vec<(Vec<u8>, f64)> {
    Key::open(ctx, &string(name), false).zset_after(
        after.map(|(score, member)| (*score, member.as_slice())),
        f64::INFINITY,
        limit,
    )
}

/// Whether the key `name` exists.
pub fn exists(ctx: &Context, name: &[u8]) -> bool {
    Key::open(ctx, &string(name), false).kind() != raw::KeyType::Empty
}

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
    let due = Key::open(ctx, &string(&keys::due_key(slot)), false);
    let mut out: Vec<DueEntry> = due
        .zset_after(None, until as f64, limit)
        .into_iter()
        .map(|(member, score)| DueEntry::Device(member, score as Millis))
        .collect();
    if out.len() < limit {
        let timers = Key::open(ctx, &string(&keys::timers_key(slot)), false);
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
            let key = Key::open(ctx, &string(name), false);
            key.zset_after(None, f64::INFINITY, 1)
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
    let name = string(name);
    let key = Key::open(ctx, &name, true);
    if key.kind() != raw::KeyType::ZSet {
        return;
    }
    let member = string(member);
    if key
        .zset_score(&member)
        .is_some_and(|score| now.is_none_or(|now| score as Millis <= now))
    {
        key.zset_rem(&member);
        ctx.replicate("ZREM", &[&name, &member]);
        ctx.notify_keyspace_event(NotifyEvent::ZSET, "zrem", &name);
    }
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
    let key = Key::open(ctx, &string(&keys::listing_key(slot, None)), false);
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

/// Brings the listing directory up to date with the listing keys changed by other means than the
/// module's writes (see `listing::mark_dirty`). Called before the directory is read.
pub fn refresh_directory(ctx: &Context) {
    listing::refresh(|scope, slot| listing_scores(ctx, &keys::listing_key(slot, scope)));
}

/// The scores of the sorted set `name`, lowest first, as the listing directory keeps them.
pub fn listing_scores(ctx: &Context, name: &[u8]) -> Vec<Millis> {
    Key::open(ctx, &string(name), false).zset_scores()
}

/// The first member of a slot's listing after `bound` (from the top when `None`).
pub fn listing_next(
    ctx: &Context,
    slot: u16,
    scope: Option<&[u8]>,
    bound: Option<&Position>,
) -> Option<Position> {
    let key = Key::open(ctx, &string(&keys::listing_key(slot, scope)), false);
    key.zset_first_below(bound.map(|b| (b.last_active as f64, b.user.as_slice())))
        .map(|(user, score)| Position {
            last_active: score as Millis,
            user,
        })
}

/// The names of every listing key in the database, found by a scan of the keyspace.
pub fn listing_keys(ctx: &Context) -> Vec<Vec<u8>> {
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

/// Counts the users with registered devices and their devices in every slot, from the due
/// indexes, and sets the gauges.
pub fn census(ctx: &Context) {
    for slot in 0..keys::SLOTS as u16 {
        let key = Key::open(ctx, &string(&keys::due_key(slot)), false);
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

/// Fails with the names of the module API functions this server lacks, so the module refuses to
/// load instead of failing later (every other access in this file relies on this check).
pub fn check_server_api() -> Result<(), String> {
    macro_rules! present {
        ($name:ident) => {{
            // SAFETY: a copy of a function pointer the server filled in at load time.
            let f = unsafe { raw::$name };
            f.is_some()
        }};
    }
    let present = {
        [
            ("Milliseconds", present!(RedisModule_Milliseconds)),
            ("OpenKey", present!(RedisModule_OpenKey)),
            ("CloseKey", present!(RedisModule_CloseKey)),
            ("KeyType", present!(RedisModule_KeyType)),
            ("DeleteKey", present!(RedisModule_DeleteKey)),
            ("ScanCursorCreate", present!(RedisModule_ScanCursorCreate)),
            ("ScanCursorDestroy", present!(RedisModule_ScanCursorDestroy)),
            ("ScanKey", present!(RedisModule_ScanKey)),
            ("HashSet", present!(RedisModule_HashSet)),
            ("ZsetAdd", present!(RedisModule_ZsetAdd)),
            ("ZsetRem", present!(RedisModule_ZsetRem)),
            ("ZsetScore", present!(RedisModule_ZsetScore)),
            (
                "ZsetFirstInScoreRange",
                present!(RedisModule_ZsetFirstInScoreRange),
            ),
            (
                "ZsetRangeCurrentElement",
                present!(RedisModule_ZsetRangeCurrentElement),
            ),
            ("ZsetRangeNext", present!(RedisModule_ZsetRangeNext)),
            (
                "ZsetLastInScoreRange",
                present!(RedisModule_ZsetLastInScoreRange),
            ),
            ("ZsetRangePrev", present!(RedisModule_ZsetRangePrev)),
            ("FreeString", present!(RedisModule_FreeString)),
            ("Scan", present!(RedisModule_Scan)),
            (
                "SubscribeToKeyspaceEvents",
                present!(RedisModule_SubscribeToKeyspaceEvents),
            ),
            ("ZsetRangeStop", present!(RedisModule_ZsetRangeStop)),
            ("PublishMessage", present!(RedisModule_PublishMessage)),
            (
                "PublishMessageShard",
                present!(RedisModule_PublishMessageShard),
            ),
            (
                "AvoidReplicaTraffic",
                present!(RedisModule_AvoidReplicaTraffic),
            ),
            ("GetContextFlags", present!(RedisModule_GetContextFlags)),
            ("CreateTimer", present!(RedisModule_CreateTimer)),
            ("StopTimer", present!(RedisModule_StopTimer)),
            ("GetSelectedDb", present!(RedisModule_GetSelectedDb)),
            (
                "SubscribeToServerEvent",
                present!(RedisModule_SubscribeToServerEvent),
            ),
            ("HashGet", present!(RedisModule_HashGet)),
            (
                "IsKeysPositionRequest",
                present!(RedisModule_IsKeysPositionRequest),
            ),
            ("KeyAtPos", present!(RedisModule_KeyAtPos)),
            ("Call", present!(RedisModule_Call)),
            ("SetExpire", present!(RedisModule_SetExpire)),
            (
                "GetDetachedThreadSafeContext",
                present!(RedisModule_GetDetachedThreadSafeContext),
            ),
            (
                "FreeThreadSafeContext",
                present!(RedisModule_FreeThreadSafeContext),
            ),
            ("GetAbsExpire", present!(RedisModule_GetAbsExpire)),
            ("SetAbsExpire", present!(RedisModule_SetAbsExpire)),
            ("Replicate", present!(RedisModule_Replicate)),
            ("ReplyWithMap", present!(RedisModule_ReplyWithMap)),
        ]
    };
    let missing: Vec<&str> = present
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}
