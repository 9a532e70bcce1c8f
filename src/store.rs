//! All key access: the user hashes and the per-slot due indexes, read and written through the
//! low-level key API, with every write replicated as explicit effects (absolute timestamps, no
//! clock reads on replicas) and announced as keyspace events.

use crate::codec::{self, FieldChanges};
use crate::model::{Millis, Record};
use crate::{config, events, keys, stats, sweep};
use redis_module::{raw, Context, NotifyEvent, RedisError, RedisString};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::ptr;

/// The server's clock, in milliseconds since the epoch.
pub fn now() -> Millis {
    // SAFETY: the function pointer is set by the server before any command runs.
    unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) }
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

    /// Every field and value of a hash key.
    fn hash_fields(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        unsafe extern "C" fn collect(
            _key: *mut raw::RedisModuleKey,
            field: *mut raw::RedisModuleString,
            value: *mut raw::RedisModuleString,
            data: *mut c_void,
        ) {
            // SAFETY: `data` is the Vec passed below; field and value live during the callback.
            let out = unsafe { &mut *data.cast::<Vec<(Vec<u8>, Vec<u8>)>>() };
            if !field.is_null() && !value.is_null() {
                out.push((
                    RedisString::string_as_slice(field).to_vec(),
                    RedisString::string_as_slice(value).to_vec(),
                ));
            }
        }
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if self.kind() != raw::KeyType::Hash {
            return out;
        }
        // SAFETY: a cursor is created, used on an open hash key, and destroyed.
        unsafe {
            let cursor = raw::RedisModule_ScanCursorCreate.unwrap_unchecked()();
            let scan = raw::RedisModule_ScanKey.unwrap_unchecked();
            while scan(
                self.ptr,
                cursor,
                Some(collect),
                ptr::addr_of_mut!(out).cast::<c_void>(),
            ) != 0
            {}
            raw::RedisModule_ScanCursorDestroy.unwrap_unchecked()(cursor);
        }
        out
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

    fn zset_score(&self, member: &[u8]) -> Option<f64> {
        if self.kind() != raw::KeyType::ZSet {
            return None;
        }
        let member = string(member);
        let mut score = 0f64;
        // SAFETY: an open sorted-set key.
        let status = unsafe {
            raw::RedisModule_ZsetScore.unwrap_unchecked()(self.ptr, member.inner, &mut score)
        };
        (status == raw::REDISMODULE_OK as c_int).then_some(score)
    }

    fn zset_add(&self, score: f64, member: &[u8]) {
        let member = string(member);
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

    fn zset_rem(&self, member: &[u8]) {
        let member = string(member);
        let mut deleted: c_int = 0;
        // SAFETY: an open writable sorted-set key.
        unsafe {
            raw::RedisModule_ZsetRem.unwrap_unchecked()(self.ptr, member.inner, &mut deleted);
        }
    }

    /// Every member with a score up to `max` (all with `f64::INFINITY`), lowest score first, at most
    /// `limit` of them.
    fn zset_range(&self, ctx: &Context, max: f64, limit: usize) -> Vec<(Vec<u8>, f64)> {
        let mut out = Vec::new();
        if self.kind() != raw::KeyType::ZSet || limit == 0 {
            return out;
        }
        // SAFETY: a range opened on an open sorted-set key, walked and stopped; each element
        // string is owned by the RedisString that frees it.
        unsafe {
            let started = raw::RedisModule_ZsetFirstInScoreRange.unwrap_unchecked()(
                self.ptr,
                f64::NEG_INFINITY,
                max,
                0,
                0,
            );
            if started != raw::REDISMODULE_OK as c_int {
                return out;
            }
            loop {
                let mut score = 0f64;
                let element = raw::RedisModule_ZsetRangeCurrentElement.unwrap_unchecked()(
                    self.ptr, &mut score,
                );
                if element.is_null() {
                    break;
                }
                let element = RedisString::from_redis_module_string(ctx.get_raw(), element);
                out.push((element.as_slice().to_vec(), score));
                if out.len() >= limit
                    || raw::RedisModule_ZsetRangeNext.unwrap_unchecked()(self.ptr) == 0
                {
                    break;
                }
            }
            raw::RedisModule_ZsetRangeStop.unwrap_unchecked()(self.ptr);
        }
        out
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

/// A user's record as stored now, for reads.
pub fn read_user(ctx: &Context, user: &[u8]) -> Result<Record, RedisError> {
    let key = Key::open(ctx, &string(&keys::user_key(user)), false);
    key.check_type(raw::KeyType::Hash)?;
    let fields = key.hash_fields();
    Ok(codec::decode(
        fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())),
    ))
}

/// A user's record opened for a write at a moment `now`, already settled (devices past their
/// deadline removed): change `record`, then [`commit`](UserWrite::commit).
pub struct UserWrite {
    pub now: Millis,
    /// Devices the settling removed.
    pub timed_out: usize,
    user: Vec<u8>,
    name: RedisString,
    key: Key,
    due_name: RedisString,
    due: Key,
    before: Record,
    pub record: Record,
}

impl UserWrite {
    /// Opens every key a write to `user` may touch, checks their types before anything changes,
    /// and settles the record at the server's current time. Transitions announce device-level
    /// events as the `device-events` setting says.
    pub fn open(ctx: &Context, user: &[u8]) -> Result<UserWrite, RedisError> {
        let name = string(&keys::user_key(user));
        let key = Key::open(ctx, &name, true);
        key.check_type(raw::KeyType::Hash)?;
        let due_name = string(&keys::due_key(keys::slot(user)));
        let due = Key::open(ctx, &due_name, true);
        due.check_type(raw::KeyType::ZSet)?;
        let fields = key.hash_fields();
        let mut before = codec::decode(fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())));
        before.device_events = config::device_events();
        let now = now();
        let mut record = before.clone();
        let timed_out = record.settle(now);
        Ok(UserWrite {
            now,
            timed_out,
            user: user.to_vec(),
            name,
            key,
            due_name,
            due,
            record,
            before,
        })
    }

    /// Writes what changed in `record`, keeps the key's expiry and the due index in step,
    /// replicates each effect with explicit values, and publishes the record's events.
    pub fn commit(self, ctx: &Context) {
        let now = self.now;
        stats::TIMEOUTS.add(self.timed_out as i64);
        let name = self.name.as_slice();
        let (before, after) = (self.before.devices.len(), self.record.devices.len());
        stats::DEVICES_ONLINE.add(after as i64 - before as i64);
        stats::USERS_ONLINE.add(i64::from(after > 0) - i64::from(before > 0));
        let changes = codec::changes(&self.before, &self.record);
        self.write_fields(ctx, &changes);

        match self.record.expires_at(config::retention()) {
            Some(at) if at > now => {
                if self.key.expire_at() != Some(at) {
                    self.key.set_expire_at(at);
                    ctx.replicate("PEXPIREAT", &[name, at.to_string().as_bytes()]);
                    ctx.notify_keyspace_event(NotifyEvent::GENERIC, "expire", &self.name);
                }
            }
            // Nothing left to keep, or retention already ran out.
            _ => {
                if self.key.kind() != raw::KeyType::Empty {
                    self.key.delete();
                    ctx.replicate("DEL", &[name]);
                    ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", &self.name);
                }
            }
        }

        let due_name = self.due_name.as_slice();
        let current = self.due.zset_score(&self.user);
        match self.record.next_deadline() {
            Some(deadline) if current != Some(deadline as f64) => {
                self.due.zset_add(deadline as f64, &self.user);
                sweep::note_deadline(keys::slot(&self.user), deadline);
                ctx.replicate(
                    "ZADD",
                    &[due_name, deadline.to_string().as_bytes(), &self.user],
                );
                ctx.notify_keyspace_event(NotifyEvent::ZSET, "zadd", &self.due_name);
            }
            None if current.is_some() => {
                self.due.zset_rem(&self.user);
                ctx.replicate("ZREM", &[due_name, &self.user]);
                ctx.notify_keyspace_event(NotifyEvent::ZSET, "zrem", &self.due_name);
            }
            _ => {}
        }
        events::publish(ctx, &self.user, &self.record.events);
    }

    fn write_fields(&self, ctx: &Context, changes: &FieldChanges) {
        let name = self.name.as_slice();
        if !changes.set.is_empty() {
            let mut argv: Vec<&[u8]> = Vec::with_capacity(1 + 2 * changes.set.len());
            argv.push(name);
            for (field, value) in &changes.set {
                self.key.hash_set(field, value);
                argv.push(field);
                argv.push(value);
            }
            ctx.replicate("HSET", argv.as_slice());
            ctx.notify_keyspace_event(NotifyEvent::HASH, "hset", &self.name);
        }
        if !changes.delete.is_empty() {
            let mut argv: Vec<&[u8]> = Vec::with_capacity(1 + changes.delete.len());
            argv.push(name);
            for field in &changes.delete {
                self.key.hash_del(field);
                argv.push(field);
            }
            ctx.replicate("HDEL", argv.as_slice());
            ctx.notify_keyspace_event(NotifyEvent::HASH, "hdel", &self.name);
        }
    }
}

/// Up to `limit` users of the slot's due index whose earliest deadline is at or before `until`,
/// earliest first.
pub fn due_users(ctx: &Context, slot: u16, until: Millis, limit: usize) -> Vec<(Vec<u8>, Millis)> {
    let key = Key::open(ctx, &string(&keys::due_key(slot)), false);
    key.zset_range(ctx, until as f64, limit)
        .into_iter()
        .map(|(user, score)| (user, score as Millis))
        .collect()
}

/// The earliest deadline in the slot's due index, if it has any entry.
pub fn next_due(ctx: &Context, slot: u16) -> Option<Millis> {
    due_users(ctx, slot, Millis::MAX, 1)
        .first()
        .map(|(_, deadline)| *deadline)
}

/// Removes a user's entry from the slot's due index, for an entry whose record cannot be read
/// (its key was overwritten by hand with another type).
pub fn drop_due(ctx: &Context, user: &[u8]) {
    let name = string(&keys::due_key(keys::slot(user)));
    let key = Key::open(ctx, &name, true);
    if key.zset_score(user).is_some() {
        key.zset_rem(user);
        ctx.replicate("ZREM", &[name.as_slice(), user]);
        ctx.notify_keyspace_event(NotifyEvent::ZSET, "zrem", &name);
    }
}

/// Counts the users with registered devices and their devices, from the keys.
pub fn census(ctx: &Context) -> (i64, i64) {
    let (mut users, mut devices) = (0i64, 0i64);
    for slot in 0..keys::SLOTS as u16 {
        for (user, _) in due_users(ctx, slot, Millis::MAX, usize::MAX) {
            if let Ok(record) = read_user(ctx, &user) {
                users += 1;
                devices += record.devices.len() as i64;
            }
        }
    }
    (users, devices)
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
                "GetDetachedThreadSafeContext",
                present!(RedisModule_GetDetachedThreadSafeContext),
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
