//! The one way the module writes a key: [`apply`] changes it, replicates the change as a command
//! with explicit values (absolute times, never a clock read on the replica), and announces it as
//! the keyspace event that command raises. Settings, which do not depend on the clock, are
//! written through [`call`], where the server itself replicates and announces.

use crate::model::Millis;
use crate::server::Key;
use redis_module::{Context, ContextFlags, NotifyEvent, RedisError, RedisValue};
use std::sync::atomic::{AtomicBool, Ordering};

/// A change to one key.
pub enum Effect<'a> {
    /// `HSET key field value ...`
    HashSet(&'a [(Vec<u8>, Vec<u8>)]),
    /// `HDEL key field ...`
    HashDel(&'a [Vec<u8>]),
    /// `ZADD key score member ...`
    ZAdd(&'a [(Millis, Vec<u8>)]),
    /// `ZREM key member ...`
    ZRem(&'a [Vec<u8>]),
    /// `PEXPIREAT key at`
    ExpireAt(Millis),
    /// `PERSIST key` (nothing when the key has no TTL)
    Persist,
    /// `DEL key`
    Delete,
}

/// Applies `effect` to `key` (opened for writing), replicates it and notifies its keyspace event.
/// Whether it changed anything (an empty list of fields or members, or a PERSIST of a key
/// without TTL, does not).
pub fn apply(ctx: &Context, key: &Key, effect: Effect) -> bool {
    let nothing = match effect {
        Effect::HashSet(fields) => fields.is_empty(),
        Effect::HashDel(members) | Effect::ZRem(members) => members.is_empty(),
        Effect::ZAdd(members) => members.is_empty(),
        Effect::ExpireAt(_) | Effect::Persist | Effect::Delete => false,
    };
    if nothing {
        return false;
    }
    let name = key.name();
    let mut argv: Vec<&[u8]> = vec![name.as_slice()];
    let numbers: Vec<String>;
    let (command, class, event) = match effect {
        Effect::HashSet(fields) => {
            for (field, value) in fields {
                key.hash_set(field, value);
                argv.extend([field.as_slice(), value.as_slice()]);
            }
            ("HSET", NotifyEvent::HASH, "hset")
        }
        Effect::HashDel(fields) => {
            for field in fields {
                key.hash_del(field);
                argv.push(field);
            }
            ("HDEL", NotifyEvent::HASH, "hdel")
        }
        Effect::ZAdd(members) => {
            numbers = members.iter().map(|(score, _)| score.to_string()).collect();
            for ((score, member), text) in members.iter().zip(&numbers) {
                key.zset_add(*score as f64, member);
                argv.extend([text.as_bytes(), member.as_slice()]);
            }
            ("ZADD", NotifyEvent::ZSET, "zadd")
        }
        Effect::ZRem(members) => {
            for member in members {
                key.zset_rem(member);
                argv.push(member);
            }
            ("ZREM", NotifyEvent::ZSET, "zrem")
        }
        Effect::ExpireAt(at) => {
            key.set_expire_at(at);
            numbers = vec![at.to_string()];
            argv.push(numbers[0].as_bytes());
            ("PEXPIREAT", NotifyEvent::GENERIC, "expire")
        }
        Effect::Persist => {
            if !key.persist() {
                return false;
            }
            ("PERSIST", NotifyEvent::GENERIC, "persist")
        }
        Effect::Delete => {
            key.delete();
            ("DEL", NotifyEvent::GENERIC, "del")
        }
    };
    let _own = OwnWrite::begin();
    ctx.replicate(command, argv.as_slice());
    ctx.notify_keyspace_event(class, event, name);
    true
}

/// Runs a write on one of a user's settings keys (`HSET`, `SADD`, `SREM`) through the server,
/// which replicates and announces it as it is: these writes do not depend on the clock.
pub fn call(ctx: &Context, command: &str, args: &[&[u8]]) -> Result<RedisValue, RedisError> {
    check_writable(ctx)?;
    let options = redis_module::CallOptionsBuilder::new().replicate().build();
    let reply: redis_module::CallResult = ctx.call_ext(command, &options, args);
    reply.map_or_else(|e| Err(e.into()), |v| Ok((&v).into()))
}

/// Presence changes only on a master, whose sweep keeps it: a writable replica
/// (`replica-read-only no`) would take writes that no sweep ever expires, and publish events that
/// no consumer expects from it.
pub fn check_writable(ctx: &Context) -> Result<(), RedisError> {
    if ctx.get_flags().contains(ContextFlags::SLAVE) {
        return Err(crate::error::Error::Replica.into());
    }
    Ok(())
}

/// Set while the module announces one of its own writes.
static OWN_WRITE: AtomicBool = AtomicBool::new(false);

/// Marks the keyspace notifications sent while it lives as the module's own: their effect on what
/// the module derives (the listing directory, the vanished users) is already accounted for.
struct OwnWrite(());

impl OwnWrite {
    fn begin() -> OwnWrite {
        OWN_WRITE.store(true, Ordering::Relaxed);
        OwnWrite(())
    }
}

impl Drop for OwnWrite {
    fn drop(&mut self) {
        OWN_WRITE.store(false, Ordering::Relaxed);
    }
}

/// Whether a keyspace notification comes from one of the module's own writes.
pub fn own_write_in_progress() -> bool {
    OWN_WRITE.load(Ordering::Relaxed)
}
