//! PRESENCE.GET, PRESENCE.BULK and PRESENCE.DEVICES: reads at the server's current time.

use super::arguments;
use crate::model::{Device, Record, View};
use crate::reply::Reply;
use crate::{args, config, store};
use redis_module::{Context, RedisError, RedisResult, RedisString};

/// `PRESENCE.GET user`: a map of user, status, devices, last_seen, since.
pub fn get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let [user] = argv[..] else {
        return Err(RedisError::WrongArity);
    };
    let user = args::id("user", user)?;
    let view = store::read_user(ctx, user, false)?.view(store::now());
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
    ])
    .send(ctx)
}

/// `PRESENCE.BULK user [user ...]`: one `[user, status, last_seen, devices]` row per user, in order.
pub fn bulk(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let users = args::bulk_users(&argv, config::max_bulk())?;
    let now = store::now();
    let mut rows = Vec::with_capacity(users.len());
    for user in users {
        let View {
            status,
            devices,
            last_seen,
            ..
        } = store::read_user(ctx, user, false)?.view(now);
        rows.push(Reply::Array(vec![
            Reply::Bulk(user.to_vec()),
            Reply::Text(status.as_str()),
            Reply::opt_int(last_seen),
            Reply::Int(devices as i64),
        ]));
    }
    Reply::Array(rows).send(ctx)
}

/// `PRESENCE.DEVICES user`: a map per connected device, oldest connection first.
pub fn devices(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let [user] = argv[..] else {
        return Err(RedisError::WrongArity);
    };
    let user = args::id("user", user)?;
    let record: Record = store::read_user(ctx, user, true)?;
    let mut live: Vec<(&Vec<u8>, &Device)> = record.live_devices(store::now()).collect();
    live.sort_by_key(|(id, d)| (d.connected_at, id.as_slice()));
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
