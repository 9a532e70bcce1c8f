//! PRESENCE.PRIVACY and PRESENCE.CONTACTS: who may see what. Settings, kept until changed.

use super::arguments;
use crate::args::{self, Contacts};
use crate::reply::Reply;
use crate::{keys, store};
use redis_module::{Context, RedisResult, RedisString, RedisValue};

/// `PRESENCE.PRIVACY user [ONLINE rule] [LASTSEEN rule]`: sets the rules given (OK), or with
/// neither replies the current rules as a map.
pub fn privacy(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let (user, online, last_seen) = args::privacy(&argv)?;
    let rules = store::settings::read_privacy(ctx, user)?; // WRONGTYPE before anything changes
    if online.is_none() && last_seen.is_none() {
        return Reply::Map(vec![
            ("online", Reply::Text(rules.online.as_str())),
            ("lastseen", Reply::Text(rules.last_seen.as_str())),
        ])
        .send(ctx);
    }
    let key = keys::settings_key(user);
    let mut hset: Vec<&[u8]> = vec![&key];
    if let Some(rule) = online {
        hset.extend([b"online".as_slice(), rule.as_str().as_bytes()]);
    }
    if let Some(rule) = last_seen {
        hset.extend([b"lastseen".as_slice(), rule.as_str().as_bytes()]);
    }
    store::settings::write(ctx, "HSET", &hset)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `PRESENCE.CONTACTS user (ADD|REM) contact [contact ...]`: how many were added or removed, as
/// SADD and SREM reply; `PRESENCE.CONTACTS user LIST`: the contacts.
pub fn contacts(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let (user, action) = args::contacts(&argv)?;
    let key = keys::contacts_key(user);
    let (command, contacts) = match action {
        Contacts::List => return list_contacts(ctx, &key),
        Contacts::Add(contacts) => ("SADD", contacts),
        Contacts::Remove(contacts) => ("SREM", contacts),
    };
    let call: Vec<&[u8]> = std::iter::once(key.as_slice()).chain(contacts).collect();
    store::settings::write(ctx, command, &call)
}

/// The members of the contacts set `key`.
fn list_contacts(ctx: &Context, key: &[u8]) -> RedisResult {
    let members = match ctx.call("SMEMBERS", &[key][..])? {
        RedisValue::Array(items) => items,
        _ => Vec::new(),
    };
    let rows = members
        .into_iter()
        .filter_map(|member| match member {
            RedisValue::SimpleString(s) | RedisValue::BulkString(s) => {
                Some(Reply::Bulk(s.into_bytes()))
            }
            RedisValue::StringBuffer(bytes) => Some(Reply::Bulk(bytes)),
            RedisValue::BulkRedisString(s) => Some(Reply::Bulk(s.as_slice().to_vec())),
            _ => None,
        })
        .collect();
    Reply::Array(rows).send(ctx)
}
