//! PRESENCE.GET, PRESENCE.BULK and PRESENCE.DEVICES: reads at the server's current time.

use super::arguments;
use crate::model::{Device, Millis, View};
use crate::reply::Reply;
use crate::{args, config, store};
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

/// The user as `viewer` sees them (`None`: the trusted application, or the user themself).
fn view_of(
    ctx: &Context,
    user: &[u8],
    viewer: Option<&[u8]>,
    now: Millis,
) -> Result<View, RedisError> {
    let record = store::user::read(ctx, user, false, now)?;
    match viewer {
        Some(viewer) if viewer != user => {
            let privacy = store::settings::read_privacy(ctx, user)?;
            // The contacts set is read only when a rule depends on it.
            let is_contact =
                privacy.depends_on_contacts() && store::settings::is_contact(ctx, user, viewer)?;
            Ok(record.view_for(now, privacy, is_contact))
        }
        _ => Ok(record.view(now)),
    }
}

/// `PRESENCE.GET user [VIEWER v]`: a map of user, status, devices, last_seen, since, message,
/// manual, last_active.
pub fn get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let (user, viewer) = args::get(&argv)?;
    let view = view_of(ctx, user, viewer, store::now())?;
    Reply::Map(vec![
        ("user", Reply::Bulk(user.to_vec())),
        ("status", Reply::Text(view.status.as_str())),
        ("devices", Reply::Int(view.devices as i64)),
        ("last_seen", Reply::opt_int(view.last_seen)),
        ("since", Reply::opt_int(view.since)),
        (
            "message",
            view.message
                .map_or(Reply::Nil, |m| Reply::Bulk(m.into_bytes())),
        ),
        ("manual", Reply::Int(i64::from(view.manual))),
        ("last_active", Reply::opt_int(view.last_active)),
        ("scopes", scopes_reply(&view.scopes)),
        (
            "last_device",
            view.last_device.map_or(Reply::Nil, Reply::Bulk),
        ),
    ])
    .send(ctx)
}

/// A user's scopes as a reply: an array of names.
pub fn scopes_reply(scopes: &[Vec<u8>]) -> Reply {
    Reply::Array(scopes.iter().cloned().map(Reply::Bulk).collect())
}

/// `PRESENCE.BULK user [user ...] [VIEWER v] [WITHDEVICE]`: one `[user, status, last_seen,
/// devices]` row per user, in order (with `last_device` after them with WITHDEVICE). The users'
/// positions depend on the clauses, so the server asks for them.
pub fn bulk(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if ctx.is_keys_position_request() {
        let argv: Vec<&[u8]> = args.iter().skip(1).map(RedisString::as_slice).collect();
        for position in args::bulk_parts(&argv).users {
            crate::server::read_only_key_at(ctx, position + 1);
        }
        return Ok(RedisValue::NoReply);
    }
    let argv = arguments(ctx, &args, 1)?;
    let cmd = args::bulk(&argv, config::max_bulk())?;
    let now = store::now();
    let mut rows = Vec::with_capacity(cmd.users.len());
    for user in cmd.users {
        let view = view_of(ctx, user, cmd.viewer, now)?;
        let mut row = vec![
            Reply::Bulk(user.to_vec()),
            Reply::Text(view.status.as_str()),
            Reply::opt_int(view.last_seen),
            Reply::Int(view.devices as i64),
        ];
        if cmd.with_device {
            row.push(view.last_device.map_or(Reply::Nil, Reply::Bulk));
        }
        rows.push(Reply::Array(row));
    }
    Reply::Array(rows).send(ctx)
}

/// `PRESENCE.DEVICES user`: a map per connected device, oldest connection first.
pub fn devices(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let user = args::user_only(&argv)?;
    let now = store::now();
    let record = store::user::read(ctx, user, true, now)?.record;
    let mut live: Vec<(&Vec<u8>, &Device)> = record.live_devices(now).collect();
    live.sort_by_key(|(id, d)| (d.connected_at, d.order, id.as_slice()));
    let rows = live
        .into_iter()
        .map(|(id, d)| {
            Reply::Map(vec![
                ("device", Reply::Bulk(id.clone())),
                ("connected_at", Reply::Int(d.connected_at)),
                ("last_heartbeat", Reply::Int(d.last_heartbeat)),
                ("expires_at", Reply::Int(d.deadline())),
                (
                    "meta",
                    d.meta
                        .as_ref()
                        .map_or(Reply::Nil, |m| Reply::Bulk(m.clone().into_bytes())),
                ),
                (
                    "context",
                    d.context
                        .as_ref()
                        .map_or(Reply::Nil, |c| Reply::Bulk(c.clone())),
                ),
            ])
        })
        .collect();
    Reply::Array(rows).send(ctx)
}
