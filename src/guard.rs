//! The rule no callback may break: a panic must never reach the server, where it aborts
//! redis-server with all its data. Every entry point the server calls (commands, the sweep's
//! timer, server events, keyspace notifications, configuration callbacks, INFO) runs its body
//! through [`command`] or [`callback`], which catch what the code's own checks missed, log it and
//! count it in `INFO presence` (`presence_panics`).

use crate::stats;
use redis_module::{Context, RedisError, RedisResult, RedisString};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A command handler as the module registers it.
pub type Handler = fn(&Context, Vec<RedisString>) -> RedisResult;

/// Runs the handler of command `name`; a panic becomes an `ERR` reply and a line in the log.
pub fn command(ctx: &Context, name: &str, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    match catch_unwind(AssertUnwindSafe(|| handler(ctx, args))) {
        Ok(result) => result,
        Err(payload) => {
            caught(name, payload.as_ref());
            Err(RedisError::String(format!(
                "ERR presence: {name} hit an internal error and stopped (details in the server log)"
            )))
        }
    }
}

/// Runs the body of a callback that is not a command (`what` names it in the log); `None` when
/// it panicked.
pub fn callback<T>(what: &str, body: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => Some(value),
        Err(payload) => {
            caught(what, payload.as_ref());
            None
        }
    }
}

fn caught(what: &str, payload: &(dyn Any + Send)) {
    stats::PANICS.add(1);
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    log_warning(&format!(
        "presence: {what} stopped on an internal error: {message}"
    ));
}

/// Logs a warning whatever the text holds (the crate's logger refuses NUL bytes by panicking).
pub fn log_warning(text: &str) {
    redis_module::logging::log_warning(text.replace('\0', "\\0"));
}
