//! An open key and the low-level operations on it the module uses: hashes, sorted sets, expiry.

use super::{call, string};
use redis_module::{raw, Context, RedisError, RedisString};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::ptr;

/// An open key, closed when dropped. Every operation checks the key's type first where the
/// server's function expects one (a key of another type reads as empty).
pub struct Key {
    ptr: *mut raw::RedisModuleKey,
    name: RedisString,
}

impl Key {
    /// Opens `name` for reading, and for writing too when `write`.
    pub fn open(ctx: &Context, name: &[u8], write: bool) -> Key {
        let name = string(name);
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        // SAFETY: ctx and name are valid for the duration of the command.
        let ptr = unsafe {
            call!(RedisModule_OpenKey(
                ctx.get_raw(),
                name.inner,
                mode as c_int
            ))
        };
        Key {
            ptr: ptr.cast(),
            name,
        }
    }

    /// The key's name, as the server holds it.
    pub fn name(&self) -> &RedisString {
        &self.name
    }

    pub fn kind(&self) -> raw::KeyType {
        if self.ptr.is_null() {
            return raw::KeyType::Empty;
        }
        // SAFETY: an open key.
        let kind = unsafe { call!(RedisModule_KeyType(self.ptr)) };
        raw::KeyType::from(kind)
    }

    /// Fails with WRONGTYPE unless the key is missing or of the `expected` type.
    pub fn check_type(&self, expected: raw::KeyType) -> Result<(), RedisError> {
        match self.kind() {
            raw::KeyType::Empty => Ok(()),
            kind if kind == expected => Ok(()),
            _ => Err(RedisError::WrongType),
        }
    }

    /// Calls `visit` with every field and value of a hash key, without copying them.
    pub fn scan_hash(&self, mut visit: impl FnMut(&[u8], &[u8])) {
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
            let cursor = call!(RedisModule_ScanCursorCreate());
            while call!(RedisModule_ScanKey(
                self.ptr,
                cursor,
                Some(each),
                ptr::addr_of_mut!(visitor).cast::<c_void>(),
            )) != 0
            {}
            call!(RedisModule_ScanCursorDestroy(cursor));
        }
    }

    /// One field of a hash key.
    pub fn hash_get(&self, field: &[u8]) -> Option<RedisString> {
        if self.kind() != raw::KeyType::Hash {
            return None;
        }
        let field = string(field);
        let mut value: *mut raw::RedisModuleString = ptr::null_mut();
        // SAFETY: an open hash key; the variadic list ends with NULL; the value string returned
        // is owned by the RedisString that frees it.
        unsafe {
            call!(RedisModule_HashGet(
                self.ptr,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                &mut value as *mut *mut raw::RedisModuleString,
                ptr::null_mut::<raw::RedisModuleString>(),
            ));
        }
        if value.is_null() {
            return None;
        }
        Some(RedisString::from_redis_module_string(
            ptr::null_mut(),
            value,
        ))
    }

    pub fn hash_set(&self, field: &[u8], value: &[u8]) {
        let (field, value) = (string(field), string(value));
        // SAFETY: an open writable key; the variadic list ends with NULL.
        unsafe {
            call!(RedisModule_HashSet(
                self.ptr,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                value.inner,
                ptr::null_mut::<raw::RedisModuleString>(),
            ));
        }
    }

    pub fn hash_del(&self, field: &[u8]) {
        let field = string(field);
        // SAFETY: as in `hash_set`; the special DELETE value removes the field.
        unsafe {
            call!(RedisModule_HashSet(
                self.ptr,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                raw::REDISMODULE_HASH_DELETE,
                ptr::null_mut::<raw::RedisModuleString>(),
            ));
        }
    }

    pub fn zset_score(&self, member: &[u8]) -> Option<f64> {
        if self.kind() != raw::KeyType::ZSet {
            return None;
        }
        let member = string(member);
        let mut score = 0f64;
        // SAFETY: an open sorted-set key.
        let status = unsafe { call!(RedisModule_ZsetScore(self.ptr, member.inner, &mut score)) };
        (status == raw::REDISMODULE_OK as c_int).then_some(score)
    }

    pub fn zset_add(&self, score: f64, member: &[u8]) {
        let member = string(member);
        // SAFETY: an open writable key, empty or a sorted set.
        unsafe {
            call!(RedisModule_ZsetAdd(
                self.ptr,
                score,
                member.inner,
                ptr::null_mut(),
            ));
        }
    }

    pub fn zset_rem(&self, member: &[u8]) {
        let member = string(member);
        let mut deleted: c_int = 0;
        // SAFETY: an open writable sorted-set key.
        unsafe {
            call!(RedisModule_ZsetRem(self.ptr, member.inner, &mut deleted));
        }
    }

    /// Walks the members with a score from `min` to `max`, upwards or downwards, calling `visit`
    /// with each member and its score until it returns false.
    pub fn zset_walk(
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
                call!(RedisModule_ZsetLastInScoreRange(self.ptr, min, max, 0, 0))
            } else {
                call!(RedisModule_ZsetFirstInScoreRange(self.ptr, min, max, 0, 0))
            };
            if started != raw::REDISMODULE_OK as c_int {
                return;
            }
            loop {
                let mut score = 0f64;
                let element = call!(RedisModule_ZsetRangeCurrentElement(self.ptr, &mut score,));
                if element.is_null() {
                    break;
                }
                let element = RedisString::from_redis_module_string(ptr::null_mut(), element);
                if !visit(element.as_slice(), score) {
                    break;
                }
                let step = if downwards {
                    call!(RedisModule_ZsetRangePrev(self.ptr))
                } else {
                    call!(RedisModule_ZsetRangeNext(self.ptr))
                };
                if step == 0 {
                    break;
                }
            }
            call!(RedisModule_ZsetRangeStop(self.ptr));
        }
    }

    /// Every score of a sorted-set key, lowest first (none for anything else).
    pub fn zset_scores(&self) -> Vec<i64> {
        let mut scores = Vec::new();
        self.zset_walk(f64::NEG_INFINITY, f64::INFINITY, false, |_, score| {
            scores.push(score as i64);
            true
        });
        scores
    }

    /// Up to `limit` members after `after` (score, then member, both ascending; from the start when
    /// `None`) with a score up to `max`, lowest first.
    pub fn zset_after(
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
    pub fn zset_first_below(&self, bound: Option<(f64, &[u8])>) -> Option<(Vec<u8>, f64)> {
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
    pub fn expire_at(&self) -> Option<i64> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: an open key.
        let at = unsafe { call!(RedisModule_GetAbsExpire(self.ptr)) };
        (at >= 0).then_some(at)
    }

    pub fn set_expire_at(&self, at: i64) {
        // SAFETY: an open writable key that exists.
        unsafe {
            call!(RedisModule_SetAbsExpire(self.ptr, at));
        }
    }

    /// Removes the key's TTL; whether it had one.
    pub fn persist(&self) -> bool {
        if self.expire_at().is_none() {
            return false;
        }
        // SAFETY: an open writable key that exists.
        unsafe {
            call!(RedisModule_SetExpire(
                self.ptr,
                raw::REDISMODULE_NO_EXPIRE as i64,
            ));
        }
        true
    }

    pub fn delete(&self) {
        // SAFETY: an open writable key.
        unsafe {
            call!(RedisModule_DeleteKey(self.ptr));
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: the key was opened by `Key::open` and is closed once.
            unsafe { call!(RedisModule_CloseKey(self.ptr)) };
        }
    }
}
