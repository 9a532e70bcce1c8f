//! PRESENCE.PRIVACY and PRESENCE.CONTACTS: who may see what (settings, kept until changed); and
//! PRESENCE.FANOUT: what each of many viewers sees, in one call.

use super::arguments;
use crate::args::{self, Contacts, Viewers};
use crate::error::Error;
use crate::model::{Event, Presence};
use crate::reply::Reply;
use crate::{config, events, keys, store};
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
    let rows = members(ctx, key)?.into_iter().map(Reply::Bulk).collect();
    Reply::Array(rows).send(ctx)
}

/// The members of the set `key`.
fn members(ctx: &Context, key: &[u8]) -> Result<Vec<Vec<u8>>, redis_module::RedisError> {
    let members = match ctx.call("SMEMBERS", &[key][..])? {
        RedisValue::Array(items) => items,
        _ => Vec::new(),
    };
    Ok(members
        .into_iter()
        .filter_map(|member| match member {
            RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s.into_bytes()),
            RedisValue::StringBuffer(bytes) => Some(bytes),
            RedisValue::BulkRedisString(s) => Some(s.as_slice().to_vec()),
            _ => None,
        })
        .collect())
}

/// What PRESENCE.FANOUT answers about: an event of the user's, or the user as they are now.
enum Subject {
    Event(Event),
    Now(Box<Presence>),
}

/// `PRESENCE.FANOUT user [EVENT payload] (CONTACTS | VIEWERS viewer [viewer ...])`: for each
/// viewer (the user's contacts, or those listed), `[viewer, json]`: what that viewer may see of
/// the user now under the user's privacy rules, or with EVENT that event as the viewer sees it
/// (nil when it changes nothing they see). One call fans a change out to every contact.
pub fn fanout(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let cmd = args::fanout(&argv, config::max_bulk())?;
    let user = cmd.user;
    let event = match cmd.event {
        Some(payload) => match events::parse(payload) {
            Some((of, event)) if of == user => Some(event),
            _ => return Err(Error::NotAnEvent.into()),
        },
        None => None,
    };
    let privacy = store::settings::read_privacy(ctx, user)?;
    let (viewers, all_contacts) = match cmd.viewers {
        Viewers::Contacts => (members(ctx, &keys::contacts_key(user))?, true),
        Viewers::Listed(listed) => (listed.into_iter().map(<[u8]>::to_vec).collect(), false),
    };
    let needs_contacts = privacy.depends_on_contacts();
    let now = store::now();
    let subject = match event {
        Some(event) => Subject::Event(event),
        None => Subject::Now(Box::new(store::user::read(ctx, user, false, now)?)),
    };
    let mut rows = Vec::with_capacity(viewers.len());
    for viewer in viewers {
        let trusted = viewer == user;
        let is_contact = all_contacts
            || (needs_contacts && !trusted && store::settings::is_contact(ctx, user, &viewer)?);
        let json = match &subject {
            Subject::Event(event) if trusted => Some(events::json(user, event)),
            Subject::Event(event) => event
                .as_seen_by(privacy, is_contact)
                .map(|seen| events::json(user, &seen)),
            Subject::Now(record) if trusted => Some(events::view_json(user, &record.view(now))),
            Subject::Now(record) => Some(events::view_json(
                user,
                &record.view_for(now, privacy, is_contact),
            )),
        };
        rows.push(Reply::Array(vec![
            Reply::Bulk(viewer),
            json.map_or(Reply::Nil, Reply::Bulk),
        ]));
    }
    Reply::Array(rows).send(ctx)
}

/// `PRESENCE.CHANNEL user`: the name of the user's own event channel (for SSUBSCRIBE).
pub fn channel(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let user = args::user_only(&argv)?;
    Reply::Bulk(keys::user_channel(user)).send(ctx)
}
