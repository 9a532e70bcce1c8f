//! PRESENCE.STATUS, ACTIVITY, CONTEXT and INCONTEXT: what the user says, does and has open.

use super::arguments;
use crate::error::Error;
use crate::model::Manual;
use crate::reply::Reply;
use crate::{args, store};
use redis_module::{Context, RedisResult, RedisString, RedisValue};

/// `PRESENCE.STATUS user (online|away|busy|dnd|invisible|auto) [MESSAGE text] [FOR ms]`: OK.
pub fn status(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let cmd = args::set_status(&argv)?;
    let mut write = store::user::UserWrite::open(ctx, cmd.user)?;
    let now = write.now;
    let manual = cmd.status.map(|status| Manual {
        status,
        message: cmd.message,
        until: cmd.duration.map(|duration| duration.after(now)),
    });
    write.presence.set_manual(manual, now);
    write.commit(ctx);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `PRESENCE.ACTIVITY user [device]`: records activity (the device, when given, must be
/// connected), which ends the typing of the device (of every device, when none is given): the
/// message was sent; OK.
pub fn activity(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let (user, device) = args::activity(&argv)?;
    let mut write = store::user::UserWrite::open(ctx, user)?;
    if let Some(device) = device {
        if !write.presence.devices.contains_key(device) {
            return Err(Error::DeviceNotConnected.into());
        }
    }
    let now = write.now;
    write.presence.stop_typing(device);
    write.presence.activity(now);
    write.commit(ctx);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `PRESENCE.CONTEXT user device (context|NONE)`: records which conversation (or screen) the
/// connected device has open; OK.
pub fn context(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 3)?;
    let (user, device, context) = args::context(&argv)?;
    let mut write = store::user::UserWrite::open(ctx, user)?;
    if !write.presence.set_context(device, context) {
        return Err(Error::DeviceNotConnected.into());
    }
    write.commit(ctx);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `PRESENCE.INCONTEXT user context`: 1 if any connected device of the user has it open, else 0.
pub fn in_context(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let (user, context) = args::in_context(&argv)?;
    let now = store::now();
    let record = store::user::read(ctx, user, true, now)?;
    Reply::Int(i64::from(record.in_context(context, now))).send(ctx)
}
