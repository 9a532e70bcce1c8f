//! Command handlers: parse the arguments, apply the model to the stored record, reply.

pub mod devices;
pub mod query;
pub mod sweep;

use crate::args::ArgError;
use crate::model::Refusal;
use redis_module::{RedisError, RedisString};

impl From<ArgError> for RedisError {
    fn from(e: ArgError) -> Self {
        RedisError::String(e.0)
    }
}

impl From<Refusal> for RedisError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::TooManyDevices(n) => RedisError::String(format!(
                "ERR user already has {n} connected devices (max-devices)"
            )),
        }
    }
}

/// The arguments after the command name, as byte slices; WrongArity unless there are at least `min`.
fn arguments(args: &[RedisString], min: usize) -> Result<Vec<&[u8]>, RedisError> {
    if args.len() < min + 1 {
        return Err(RedisError::WrongArity);
    }
    Ok(args[1..].iter().map(RedisString::as_slice).collect())
}
