//! Replies built in order and sent with the server's reply API, so maps keep their field order and
//! become RESP3 maps or flat RESP2 arrays (as `HGETALL` does) depending on the client's protocol.

use redis_module::{raw, Context, ContextFlags, RedisResult, RedisValue};
use std::os::raw::{c_char, c_long};

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Int(i64),
    Bulk(Vec<u8>),
    Text(&'static str),
    Nil,
    Array(Vec<Reply>),
    /// Field names and values, in order.
    Map(Vec<(&'static str, Reply)>),
}

impl Reply {
    pub fn opt_int(value: Option<i64>) -> Reply {
        value.map_or(Reply::Nil, Reply::Int)
    }

    /// Sends the reply; the command then returns [`RedisValue::NoReply`]. Inside a Lua script
    /// under RESP3 a nil is sent as `false`: Lua turns a RESP3 null into `nil`, which a table
    /// cannot hold (a map's field would vanish, an array would end there).
    pub fn send(&self, ctx: &Context) -> RedisResult {
        // The context's flags are asked only for a reply that holds a nil.
        let nil_as_false = self.has_nil() && {
            let flags = ctx.get_flags();
            flags.contains(ContextFlags::LUA) && flags.contains(ContextFlags::FLAGS_RESP3)
        };
        self.write(ctx.get_raw(), nil_as_false);
        Ok(RedisValue::NoReply)
    }

    fn has_nil(&self) -> bool {
        match self {
            Reply::Nil => true,
            Reply::Array(items) => items.iter().any(Reply::has_nil),
            Reply::Map(entries) => entries.iter().any(|(_, value)| value.has_nil()),
            _ => false,
        }
    }

    fn write(&self, ctx: *mut raw::RedisModuleCtx, nil_as_false: bool) {
        fn buffer(ctx: *mut raw::RedisModuleCtx, bytes: &[u8]) {
            raw::reply_with_string_buffer(ctx, bytes.as_ptr().cast::<c_char>(), bytes.len());
        }
        match self {
            Reply::Int(n) => {
                raw::reply_with_long_long(ctx, *n);
            }
            Reply::Bulk(bytes) => buffer(ctx, bytes),
            Reply::Text(text) => buffer(ctx, text.as_bytes()),
            Reply::Nil if nil_as_false => {
                raw::reply_with_bool(ctx, 0);
            }
            Reply::Nil => {
                raw::reply_with_null(ctx);
            }
            Reply::Array(items) => {
                raw::reply_with_array(ctx, items.len() as c_long);
                for item in items {
                    item.write(ctx, nil_as_false);
                }
            }
            Reply::Map(entries) => {
                raw::reply_with_map(ctx, entries.len() as c_long);
                for (name, value) in entries {
                    buffer(ctx, name.as_bytes());
                    value.write(ctx, nil_as_false);
                }
            }
        }
    }
}
