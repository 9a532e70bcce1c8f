//! PRESENCE.LIST and PRESENCE.COUNT: who is online on this node, everyone or a scope.

use super::arguments;
use crate::listing::{self, Position};
use crate::model::Status;
use crate::reply::Reply;
use crate::{args, store};
use redis_module::{Context, RedisResult, RedisString, RedisValue};

/// `PRESENCE.LIST [SCOPE s] [LIMIT n] [CURSOR c] [WITHSCOPES] [WITHDEVICES]`: `[next cursor,
/// rows]` as SCAN replies, each row `[user, status, last_active]` (then the user's scopes with
/// WITHSCOPES, then `[device, data]` pairs with WITHDEVICES), most recently active first; the
/// cursor is `0` at the end.
pub fn list(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 0)?;
    let cmd = args::list(&argv)?;
    store::listings::refresh_directory(ctx);
    let (positions, more) = match cmd.scope {
        Some(room) => store::listings::room_page(ctx, room, cmd.after.as_ref(), cmd.limit),
        None => {
            // Reading keys sends no notification, so nothing changes the directory meanwhile.
            let directory = listing::directory();
            listing::page(
                directory.members(),
                cmd.after.as_ref(),
                cmd.limit,
                |slot, bound| store::listings::next(ctx, slot, bound),
            )
        }
    };
    let now = store::now();
    let mut rows = Vec::with_capacity(positions.len());
    for Position { user, .. } in &positions {
        // The listing is kept with each write; the status comes from the record at this
        // moment, which also leaves out a user whose last device expired a moment ago and
        // whom the sweep has not reached yet.
        let mut presence = store::user::read(ctx, user, cmd.with_devices, now)?;
        if cmd.with_devices {
            // Settled once, for the devices; the view then reads it as it is.
            presence.settle(now);
        }
        let view = presence.view(now);
        if view.status.public() == Status::Offline {
            continue;
        }
        let mut row = vec![
            Reply::Bulk(user.clone()),
            Reply::Text(view.status.as_str()),
            Reply::opt_int(view.last_active),
        ];
        if cmd.with_scopes {
            row.push(super::query::scopes_reply(&view.scopes));
        }
        if cmd.with_devices {
            let devices = match cmd.scope {
                Some(room) => presence.devices_in(room),
                None => presence
                    .devices
                    .keys()
                    .map(|id| (id.clone(), None))
                    .collect(),
            };
            let pairs = devices.into_iter().map(|(device, data)| {
                Reply::Array(vec![Reply::Bulk(device), super::rooms::data_reply(data)])
            });
            row.push(Reply::Array(pairs.collect()));
        }
        rows.push(Reply::Array(row));
    }
    let cursor = match positions.last() {
        Some(last) if more => last.cursor().into_bytes(),
        _ => b"0".to_vec(),
    };
    Reply::Array(vec![Reply::Bulk(cursor), Reply::Array(rows)]).send(ctx)
}

/// `PRESENCE.COUNT [SCOPE s]`: how many users the listing holds, from the node's directory.
pub fn count(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 0)?;
    let scope = args::count(&argv)?;
    store::listings::refresh_directory(ctx);
    let n = match scope {
        Some(room) => listing::room_index().count(room),
        None => listing::directory().count(),
    };
    Ok(RedisValue::Integer(i64::try_from(n).unwrap_or(i64::MAX)))
}
