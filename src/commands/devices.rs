//! PRESENCE.ONLINE, PRESENCE.HEARTBEAT and PRESENCE.OFFLINE: a device connects, stays, leaves.

use super::arguments;
use crate::{args, config, stats, store};
use redis_module::{Context, RedisResult, RedisString, RedisValue};

/// `PRESENCE.ONLINE user device [TTL ms] [META json] [SCOPE s [s ...]]`: the number of connected
/// devices afterwards.
pub fn online(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let cmd = args::online(&argv)?;
    let mut write = store::user::UserWrite::open(ctx, cmd.user)?;
    let ttl = cmd.ttl.unwrap_or_else(config::timeout);
    let known = write.presence.devices.contains_key(cmd.device);
    let count = write.presence.connect(
        cmd.device,
        ttl,
        cmd.meta,
        cmd.scopes,
        write.now,
        config::max_devices(),
    )?;
    stats::CONNECTS.add(i64::from(!known));
    write.commit(ctx);
    Ok(RedisValue::Integer(count as i64))
}

/// `PRESENCE.HEARTBEAT user device [TTL ms] [ACTIVE] [META json]`: 1 if the device was connected, 0 if this registered it.
pub fn heartbeat(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let cmd = args::heartbeat(&argv)?;
    stats::HEARTBEATS.add(1);
    if !cmd.active
        && cmd.meta.is_none()
        && store::user::heartbeat_connected(ctx, cmd.user, cmd.device, cmd.ttl)?
    {
        return Ok(RedisValue::Integer(1));
    }
    let mut write = store::user::UserWrite::open(ctx, cmd.user)?;
    let known = write.presence.heartbeat(
        cmd.device,
        cmd.ttl,
        cmd.meta,
        config::timeout(),
        write.now,
        config::max_devices(),
    )?;
    if cmd.active {
        let now = write.now;
        write.presence.activity(now);
    }
    stats::CONNECTS.add(i64::from(!known));
    write.commit(ctx);
    Ok(RedisValue::Integer(i64::from(known)))
}

/// `PRESENCE.OFFLINE user device`: the number of devices left; 0 for a device that was not connected.
pub fn offline(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let (user, device) = args::offline(&argv)?;
    let mut write = store::user::UserWrite::open(ctx, user)?;
    match write.presence.disconnect(device, write.now) {
        Some(left) => {
            stats::DISCONNECTS.add(1);
            write.commit(ctx);
            Ok(RedisValue::Integer(left as i64))
        }
        // Unknown or already timed out: nothing to change (reads already treat it as gone).
        None => Ok(RedisValue::Integer(0)),
    }
}
