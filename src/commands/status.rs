//! PRESENCE.STATUS and PRESENCE.ACTIVITY: what the user says, and what the user does.

use super::arguments;
use crate::model::Manual;
use crate::{args, store};
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

/// `PRESENCE.STATUS user (online|away|busy|dnd|invisible|auto) [MESSAGE text] [FOR ms]`: OK.
pub fn status(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 2)?;
    let cmd = args::set_status(&argv)?;
    let mut write = store::UserWrite::open(ctx, cmd.user)?;
    let now = write.now;
    let manual = cmd.status.map(|status| Manual {
        status,
        message: cmd.message,
        until: cmd.duration.map(|ms| now.saturating_add(ms)),
    });
    write.record.set_manual(manual, now);
    write.commit(ctx);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `PRESENCE.ACTIVITY user [device]`: records activity (the device, when given, must be
/// connected); OK.
pub fn activity(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 1)?;
    let (user, device) = match argv[..] {
        [user] => (args::id("user", user)?, None),
        [user, device] => (args::id("user", user)?, Some(args::id("device", device)?)),
        _ => return Err(RedisError::WrongArity),
    };
    let mut write = store::UserWrite::open(ctx, user)?;
    if let Some(device) = device {
        if !write.record.devices.contains_key(device) {
            return Err(RedisError::Str("ERR device is not connected"));
        }
    }
    let now = write.now;
    write.record.activity(now);
    write.commit(ctx);
    Ok(RedisValue::SimpleStringStatic("OK"))
}
