//! PRESENCE.PRIVACY and PRESENCE.CONTACTS: who may see what. Settings, kept until changed.

use super::arguments;
use crate::reply::Reply;
use crate::{args, keys, store};
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

/// `PRESENCE.PRIVACY user [ONLINE rule] [LASTSEEN rule]`: sets the rules given (OK), or with
/// neither replies the current rules as a map.
pub fn privacy(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let user = args::id("user", argv[0])?;
    let (online, last_seen) = args::privacy_rules(&argv[1..])?;
    if online.is_none() && last_seen.is_none() {
        let rules = store::settings::read_privacy(ctx, user)?;
        return Reply::Map(vec![
            ("online", Reply::Text(rules.online.as_str())),
            ("lastseen", Reply::Text(rules.last_seen.as_str())),
        ])
        .send(ctx);
    }
    store::settings::read_privacy(ctx, user)?; // WRONGTYPE before anything changes
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
    let user = args::id("user", argv[0])?;
    let key = keys::contacts_key(user);
    let action = argv[1];
    if action.eq_ignore_ascii_case(b"LIST") {
        if argv.len() != 2 {
            return Err(RedisError::WrongArity);
        }
        // Members are replied as bulk strings built here: the call's reply would hand back
        // UTF-8 members as simple strings, which cannot carry every byte.
        let members = match ctx.call("SMEMBERS", &[key.as_slice()][..])? {
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
        return Reply::Array(rows).send(ctx);
    }
    let command = if action.eq_ignore_ascii_case(b"ADD") {
        "SADD"
    } else if action.eq_ignore_ascii_case(b"REM") {
        "SREM"
    } else {
        return Err(RedisError::String(format!(
            "ERR unknown action '{}' (expected ADD, REM or LIST)",
            args::shown(action)
        )));
    };
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let mut call: Vec<&[u8]> = vec![&key];
    for contact in &argv[2..] {
        call.push(args::id("contact", contact)?);
    }
    store::settings::write(ctx, command, &call)
}
