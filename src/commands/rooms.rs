//! PRESENCE.JOIN, LEAVE, ROOMS, TYPING and TYPERS: the rooms a device is in, and who types there.

use super::arguments;
use crate::listing::{self, Position};
use crate::model::Status;
use crate::reply::Reply;
use crate::{args, config, store};
use redis_module::{Context, RedisResult, RedisString, RedisValue};

/// `PRESENCE.JOIN user device room [DATA json]`: 1 if the device joined, 0 if it was in the room
/// (its data is replaced when DATA is given).
pub fn join(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 3)?;
    let cmd = args::join(&argv)?;
    let mut write = store::user::UserWrite::open(ctx, cmd.user)?;
    let now = write.now;
    let joined = write
        .presence
        .join(cmd.device, cmd.room, cmd.data, now, config::max_rooms())?;
    write.commit(ctx);
    Ok(RedisValue::Integer(i64::from(joined)))
}

/// `PRESENCE.LEAVE user device room`: 1 if the device was in the room, else 0.
pub fn leave(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 3)?;
    let (user, device, room) = args::device_room(&argv, false)?;
    let room = room.unwrap_or_default();
    let mut write = store::user::UserWrite::open(ctx, user)?;
    let now = write.now;
    let left = write.presence.leave(device, room, now);
    if left {
        write.commit(ctx);
    }
    Ok(RedisValue::Integer(i64::from(left)))
}

/// `PRESENCE.ROOMS user [device]`: the user's rooms (scopes included), or the device's rooms as
/// `[room, data]` pairs.
pub fn rooms(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let (user, device) = args::rooms(&argv)?;
    let now = store::now();
    let mut presence = store::user::read(ctx, user, true, now)?;
    presence.settle(now);
    let rows = match device {
        None => presence
            .rooms()
            .into_iter()
            .map(|room| Reply::Bulk(room.to_vec()))
            .collect(),
        Some(device) => presence
            .device_rooms(device)
            .into_iter()
            .map(|(room, data)| Reply::Array(vec![Reply::Bulk(room), data_reply(data)]))
            .collect(),
    };
    Reply::Array(rows).send(ctx)
}

/// `PRESENCE.TYPING user device (room|NONE)`: the device types in the room (for `typing-timeout`
/// unless it types again), or stops; OK.
pub fn typing(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 3)?;
    let (user, device, room) = args::device_room(&argv, true)?;
    let mut write = store::user::UserWrite::open(ctx, user)?;
    let now = write.now;
    write
        .presence
        .type_in(device, room, config::typing_timeout(), now)?;
    write.commit(ctx);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// Most members TYPERS looks at: a room where a crowd was active within `typing-timeout` (all
/// reconnected at once) would otherwise make one call read every one of their records.
pub const TYPERS_LOOK_MAX: usize = 10_000;

/// `PRESENCE.TYPERS room`: `[user, device]` for each device typing in the room on this node, most
/// recently active user first.
///
/// Typing is activity, so everyone typing was active within `typing-timeout`: the room's
/// listing is walked from the top only that far (and over at most [`TYPERS_LOOK_MAX`] members).
pub fn typers(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let room = args::typers(&argv)?;
    let now = store::now();
    let since = config::typing_timeout().before(now);
    store::listings::refresh_directory(ctx);
    let mut rows = Vec::new();
    let mut after: Option<Position> = None;
    let mut looked = 0;
    loop {
        let (positions, more) =
            store::listings::room_page(ctx, room, after.as_ref(), listing::DEFAULT_LIMIT);
        for position in &positions {
            looked += 1;
            if position.last_active < since || looked > TYPERS_LOOK_MAX {
                return Reply::Array(rows).send(ctx);
            }
            let presence = store::user::read(ctx, &position.user, true, now)?;
            if presence.view(now).status.public() == Status::Offline {
                continue;
            }
            for device in presence.typing_in(room, now) {
                rows.push(Reply::Array(vec![
                    Reply::Bulk(position.user.clone()),
                    Reply::Bulk(device),
                ]));
            }
        }
        match positions.last() {
            Some(last) if more => after = Some(last.clone()),
            _ => return Reply::Array(rows).send(ctx),
        }
    }
}

/// A device's member data as a reply: the JSON text, or nil.
pub fn data_reply(data: Option<String>) -> Reply {
    data.map_or(Reply::Nil, |d| Reply::Bulk(d.into_bytes()))
}
