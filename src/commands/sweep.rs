//! PRESENCE.SWEEP: run a sweep now.

use super::arguments;
use crate::error::Error;
use crate::{args, config, sweep};
use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

/// Longest one PRESENCE.SWEEP may run, whatever its LIMIT: a backlog takes several calls.
const TIME_CAP: std::time::Duration = std::time::Duration::from_millis(10);

/// `PRESENCE.SWEEP [LIMIT n]`: removes up to n (default `sweep-budget`) devices past their
/// deadline, within 10 ms, announcing each change; replies with how many it removed.
pub fn sweep(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let argv = arguments(ctx, &args, 0)?;
    let limit = args::sweep(&argv, config::sweep_budget())?;
    if !sweep::may_write(ctx) {
        return Err(Error::SweepNotHere.into());
    }
    Ok(RedisValue::Integer(
        sweep::run(ctx, limit, Some(TIME_CAP)).removed as i64,
    ))
}

/// `PRESENCE.CLOCK ms`: a master's module time, which it sends to its replicas every second in
/// the replication stream (see `clock`); a replica judges liveness by it. Refused from clients.
pub fn clock(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let flags = ctx.get_flags();
    let replicated = flags.contains(ContextFlags::REPLICATED);
    if !replicated && !flags.contains(ContextFlags::LOADING) {
        return Err(Error::ClockFromClient.into());
    }
    let [_, ms] = &args[..] else {
        return Err(RedisError::WrongArity);
    };
    // From an AOF being loaded it is old news; from the master it is its time now.
    if replicated && !flags.contains(ContextFlags::LOADING) {
        if let Some(ms) = args::integer(ms.as_slice()) {
            crate::clock::master_time(ms);
        }
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}
