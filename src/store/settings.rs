//! A user's settings: privacy rules (a hash) and contacts (a set).

use super::effect;
use crate::model::{Audience, Privacy};
use crate::server::Key;
use crate::{config, keys};
use redis_module::{raw, Context, RedisError, RedisValue};

/// A user's privacy rules (absent fields: the `privacy-online` and `privacy-lastseen` settings).
pub fn read_privacy(ctx: &Context, user: &[u8]) -> Result<Privacy, RedisError> {
    let key = Key::open(ctx, &keys::settings_key(user), false);
    key.check_type(raw::KeyType::Hash)?;
    let defaults = config::default_privacy();
    let rule = |field: &[u8], default: Audience| {
        key.hash_get(field)
            .and_then(|v| Audience::parse(v.as_slice()))
            .unwrap_or(default)
    };
    Ok(Privacy {
        online: rule(b"online", defaults.online),
        last_seen: rule(b"lastseen", defaults.last_seen),
    })
}

/// Whether `viewer` is among `user`'s contacts.
pub fn is_contact(ctx: &Context, user: &[u8], viewer: &[u8]) -> Result<bool, RedisError> {
    let reply = ctx.call(
        "SISMEMBER",
        &[keys::contacts_key(user).as_slice(), viewer][..],
    )?;
    Ok(reply == RedisValue::Integer(1))
}

/// Runs a write on one of a user's settings keys (`HSET`, `SADD`, `SREM`).
pub fn write(ctx: &Context, command: &str, args: &[&[u8]]) -> Result<RedisValue, RedisError> {
    effect::call(ctx, command, args)
}
