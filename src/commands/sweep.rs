//! PRESENCE.SWEEP: run a sweep now.

use super::arguments;
use crate::{args, config, sweep};
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

/// Most devices one PRESENCE.SWEEP may remove.
const MAX_LIMIT: i64 = 100_000_000;

/// `PRESENCE.SWEEP [LIMIT n]`: removes up to n (default `sweep-budget`) devices past their
/// deadline, announcing each change; replies with how many it removed.
pub fn sweep(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 0)?;
    let mut limit = config::sweep_budget();
    for (_, value) in args::options(&argv, &["LIMIT"])? {
        let n = args::integer("LIMIT", value)?;
        if !(1..=MAX_LIMIT).contains(&n) {
            return Err(RedisError::String(format!(
                "ERR LIMIT must be an integer from 1 to {MAX_LIMIT}, got {n}"
            )));
        }
        limit = n as usize;
    }
    if !sweep::may_write(ctx) {
        return Err(RedisError::Str(
            "ERR PRESENCE.SWEEP runs only on a master that is not loading",
        ));
    }
    Ok(RedisValue::Integer(
        sweep::run(ctx, limit, None).removed as i64,
    ))
}
