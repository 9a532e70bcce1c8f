//! The rule no callback may break: a panic must never reach the server, where it aborts
//! redis-server with all its data. Every entry point the server calls (commands, the sweep's
//! timer, server events, keyspace notifications, configuration callbacks, INFO) runs its body
//! through [`command`] or [`callback`], which catch what the code's own checks missed, log it and
//! count it in `INFO presence` (`presence_panics`).

use redis_module::{Context, RedisResult, RedisString};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};

/// A command handler as the module registers it.
pub type Handler = fn(&Context, Vec<RedisString>) -> RedisResult;

/// Runs the handler of command `name`; a panic becomes an `ERR` reply and a line in the log.
pub fn command(ctx: &Context, name: &str, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    match catch_unwind(AssertUnwindSafe(|| handler(ctx, args))) {
        Ok(result) => result,
        Err(payload) => {
            caught(name, payload.as_ref());
            Err(crate::error::Error::Internal(name.to_owned()).into())
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
    PANICS.fetch_add(1, Ordering::Relaxed);
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

/// Logs a notice whatever the text holds.
pub fn log_notice(text: &str) {
    redis_module::logging::log_notice(text.replace('\0', "\\0"));
}

/// Panics caught before they reached the server (each one is in the log).
static PANICS: AtomicI64 = AtomicI64::new(0);

/// How many panics were caught, for INFO.
pub fn panics() -> i64 {
    PANICS.load(Ordering::Relaxed)
}
