//! Command handlers: parse the arguments, apply the model to the stored record, reply.

pub mod devices;
pub mod info;
pub mod listing;
pub mod privacy;
pub mod query;
pub mod rooms;
pub mod status;
pub mod sweep;

use crate::error::Error;
use crate::model::Refusal;
use redis_module::{Context, RedisError, RedisString};

impl From<Refusal> for RedisError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::TooManyDevices(n) => Error::TooManyDevices(n).into(),
            Refusal::NotConnected => Error::DeviceNotConnected.into(),
            Refusal::TooManyRooms(n) => Error::TooManyRooms(n).into(),
            Refusal::NotInRoom => Error::NotInRoom.into(),
        }
    }
}

/// The arguments after the command name, as byte slices; WrongArity unless there are at least
/// `min`. Refuses databases other than 0, the only one the sweep watches (and the only one a
/// cluster has).
fn arguments<'a>(
    ctx: &Context,
    args: &'a [RedisString],
    min: usize,
) -> Result<Vec<&'a [u8]>, RedisError> {
    if args.len() < min + 1 {
        return Err(RedisError::WrongArity);
    }
    let db = crate::server::selected_db(ctx);
    if db != 0 {
        return Err(Error::WrongDatabase(db).into());
    }
    Ok(args[1..].iter().map(RedisString::as_slice).collect())
}
