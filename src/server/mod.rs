//! The server's module API: the only module of the crate with `unsafe` code (`lib.rs` denies it
//! everywhere else).
//!
//! Every server function called through `raw` is named once, in [`server_functions!`]: the list
//! checked at load (the module refuses to load on a server that lacks one) and the only names
//! [`call!`] accepts, so a function cannot be called without having been checked. That check is
//! what makes each `unwrap_unchecked` in `call!` sound.

mod command_info;
mod key;

pub use command_info::{add_acl_category, describe_command};
pub use key::Key;

use redis_module::{raw, Context, RedisString};
use std::os::raw::c_int;

/// Declares the server functions the module needs: `called` through [`call!`] here, and
/// `through_crate`, those `redis-module`'s safe wrappers call (they assume them present too).
macro_rules! server_functions {
    (
        called: [$($called:ident),* $(,)?],
        through_crate: [$($other:ident),* $(,)?],
        optional: [$($optional:ident),* $(,)?] $(,)?
    ) => {
        /// Markers of the functions [`call!`] may call: naming another fails to compile.
        #[allow(non_upper_case_globals, dead_code)]
        mod checked {
            $(pub const $called: () = ();)*
        }

        /// Markers of the functions some servers lack, which [`call_if_present!`] calls.
        #[allow(non_upper_case_globals, dead_code)]
        mod optional {
            $(pub const $optional: () = ();)*
        }

        /// The names of the functions this server lacks.
        fn missing_functions() -> Vec<&'static str> {
            // SAFETY: reads copies of function pointers the server filled in at load time.
            let present: &[(&str, bool)] = unsafe {
                &[
                    $((stringify!($called), { let f = raw::$called; f.is_some() }),)*
                    $((stringify!($other), { let f = raw::$other; f.is_some() }),)*
                ]
            };
            present
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(name, _)| name.trim_start_matches("RedisModule_"))
                .collect()
        }
    };
}

/// Calls a server function from the list above. Used inside an `unsafe` block whose comment says
/// why the arguments are valid; that the function exists was checked at load.
macro_rules! call {
    ($name:ident($($arg:expr),* $(,)?)) => {{
        let () = $crate::server::checked::$name;
        raw::$name.unwrap_unchecked()($($arg),*)
    }};
}
pub(crate) use call;

/// Calls a server function that some servers lack (listed as `optional` below): `None` where
/// this server has none.
macro_rules! call_if_present {
    ($name:ident($($arg:expr),* $(,)?)) => {{
        let () = $crate::server::optional::$name;
        raw::$name.map(|function| function($($arg),*))
    }};
}
pub(crate) use call_if_present;

server_functions! {
    called: [
        RedisModule_Milliseconds,
        RedisModule_OpenKey,
        RedisModule_CloseKey,
        RedisModule_KeyType,
        RedisModule_DeleteKey,
        RedisModule_ScanCursorCreate,
        RedisModule_ScanCursorDestroy,
        RedisModule_ScanKey,
        RedisModule_HashGet,
        RedisModule_HashSet,
        RedisModule_ZsetAdd,
        RedisModule_ZsetRem,
        RedisModule_ZsetScore,
        RedisModule_ZsetFirstInScoreRange,
        RedisModule_ZsetLastInScoreRange,
        RedisModule_ZsetRangeCurrentElement,
        RedisModule_ZsetRangeNext,
        RedisModule_ZsetRangePrev,
        RedisModule_ZsetRangeStop,
        RedisModule_GetAbsExpire,
        RedisModule_SetAbsExpire,
        RedisModule_SetExpire,
        RedisModule_PublishMessage,
        RedisModule_PublishMessageShard,
        RedisModule_GetSelectedDb,
        RedisModule_SubscribeToServerEvent,
        RedisModule_GetDetachedThreadSafeContext,
        RedisModule_FreeThreadSafeContext,
        RedisModule_GetCommand,
        RedisModule_SetCommandInfo,
        RedisModule_KeyAtPosWithFlags,
        RedisModule_GetServerInfo,
        RedisModule_ServerInfoGetFieldC,
        RedisModule_FreeServerInfo,
        RedisModule_SetModuleOptions,
    ],
    through_crate: [
        RedisModule_FreeString,
        RedisModule_Scan,
        RedisModule_SubscribeToKeyspaceEvents,
        RedisModule_AvoidReplicaTraffic,
        RedisModule_GetContextFlags,
        RedisModule_CreateTimer,
        RedisModule_StopTimer,
        RedisModule_IsKeysPositionRequest,
        RedisModule_Call,
        RedisModule_Replicate,
        RedisModule_ReplyWithMap,
        RedisModule_ReplyWithBool,
    ],
    // Redis 7.2 and Valkey; Valkey and Redis 7.4; the same.
    optional: [
        RedisModule_SetCommandACLCategories,
        RedisModule_AddACLCategory,
        RedisModule_GetModuleOptionsAll,
    ],
}

/// Fails with the names of the module API functions this server lacks, so the module refuses to
/// load instead of failing later.
pub fn check_functions() -> Result<(), String> {
    let missing = missing_functions();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

/// The server's name from `INFO server` (`valkey`; Redis has none before 7.4).
fn server_name(ctx: &Context) -> Option<Vec<u8>> {
    // SAFETY: a live context; the section and field names are C strings; the field's value is
    // owned by the info data, copied before that is freed (the crate's `ServerInfo::field`
    // makes a string it never frees).
    unsafe {
        let info = call!(RedisModule_GetServerInfo(ctx.get_raw(), c"server".as_ptr()));
        if info.is_null() {
            return None;
        }
        let value = call!(RedisModule_ServerInfoGetFieldC(
            info,
            c"server_name".as_ptr()
        ));
        let name = (!value.is_null()).then(|| std::ffi::CStr::from_ptr(value).to_bytes().to_vec());
        call!(RedisModule_FreeServerInfo(ctx.get_raw(), info));
        name
    }
}

/// Valkey 9's module option: the module handles atomic slot migration (`CLUSTER MIGRATESLOTS`).
const OPTION_ATOMIC_SLOT_MIGRATION: c_int = 1 << 5;

/// Declares that the module handles Valkey's atomic slot migration, on a Valkey that has it;
/// whether it did. (Redis numbers its module options on its own, so the bit is set on Valkey
/// only.)
pub fn opt_in_to_atomic_slot_migration(ctx: &Context) -> bool {
    let valkey = server_name(ctx).as_deref() == Some(&b"valkey"[..]);
    // SAFETY: no arguments.
    let known = unsafe { call_if_present!(RedisModule_GetModuleOptionsAll()) }.unwrap_or(0);
    if !valkey || known & OPTION_ATOMIC_SLOT_MIGRATION == 0 {
        return false;
    }
    // SAFETY: a live context in OnLoad; the module sets no other option.
    unsafe {
        call!(RedisModule_SetModuleOptions(
            ctx.get_raw(),
            OPTION_ATOMIC_SLOT_MIGRATION
        ))
    };
    true
}

/// Answers the server's key-position request: argument `position` is a key the command only
/// reads (`KeyAtPos` alone would declare it read-write, and read-only key permissions would
/// refuse it).
pub fn read_only_key_at(ctx: &Context, position: usize) {
    let Ok(position) = c_int::try_from(position) else {
        return;
    };
    let flags = (raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS) as c_int;
    // SAFETY: a live context of a key-position request (the caller checked it is one).
    unsafe {
        call!(RedisModule_KeyAtPosWithFlags(
            ctx.get_raw(),
            position,
            flags
        ))
    };
}

/// A byte string the server can hold (not tied to a context: freed when dropped).
pub fn string(bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(std::ptr::null_mut(), bytes)
}

/// This server's wall clock, in milliseconds since the epoch (as it schedules module timers too).
pub fn milliseconds() -> i64 {
    // SAFETY: no arguments; the pointer is filled in before the module's code runs (and read
    // checked here, for unit tests that run without a server).
    unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) }
}

/// The database the client of `ctx` selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: a live context.
    unsafe { call!(RedisModule_GetSelectedDb(ctx.get_raw())) }
}

/// Publishes `message` on `channel`, to every subscriber (`sharded`: to the subscribers of the
/// shard channel, on the nodes of the channel's slot).
pub fn publish(ctx: &Context, channel: &RedisString, message: &RedisString, sharded: bool) {
    // SAFETY: a live context; the strings live until the end of the call.
    unsafe {
        if sharded {
            call!(RedisModule_PublishMessageShard(
                ctx.get_raw(),
                channel.inner,
                message.inner
            ));
        } else {
            call!(RedisModule_PublishMessage(
                ctx.get_raw(),
                channel.inner,
                message.inner
            ));
        }
    }
}

/// A server event handler: called with the context of the event.
pub type EventHandler =
    extern "C" fn(*mut raw::RedisModuleCtx, raw::RedisModuleEvent, u64, *mut std::ffi::c_void);

/// Subscribes `handler` to the server event `id` (the crate has wrappers for some events only).
pub fn subscribe_to_server_event(ctx: &Context, id: u64, handler: EventHandler) -> bool {
    let event = raw::RedisModuleEvent { id, dataver: 1 };
    // SAFETY: a live context; a safe `extern "C"` function is a valid callback for any
    // arguments the server passes (it reads only the context).
    let status = unsafe {
        call!(RedisModule_SubscribeToServerEvent(
            ctx.get_raw(),
            event,
            Some(handler)
        ))
    };
    status == raw::REDISMODULE_OK as c_int
}

/// Valkey's server event for atomic slot migrations (valkeymodule.h: event 19, data version 1),
/// and the subevents the module acts on.
pub mod slot_migration {
    pub const EVENT: u64 = 19;
    pub const IMPORT_STARTED: u64 = 0;
    pub const IMPORT_ABORTED: u64 = 2;
    pub const IMPORT_COMPLETED: u64 = 4;
}

/// A slot range of Valkey's slot-migration event, inclusive at both ends.
#[repr(C)]
struct SlotRange {
    start: c_int,
    end: c_int,
}

/// The data of Valkey's slot-migration event, version 1.
#[repr(C)]
struct SlotMigrationInfo {
    version: u64,
    job_name: [std::os::raw::c_char; 41],
    slot_ranges: *const SlotRange,
    num_slot_ranges: u32,
}

/// The slots a slot-migration event names (nothing for data of another version).
pub fn migrated_slots(data: *const std::ffi::c_void) -> Vec<u16> {
    let info = data.cast::<SlotMigrationInfo>();
    // SAFETY: the server passes the event's data, of the layout above, for this event; checked
    // for NULL and for its version before its ranges are read.
    let ranges: &[SlotRange] = unsafe {
        match info.as_ref() {
            Some(info) if info.version == 1 && !info.slot_ranges.is_null() => {
                std::slice::from_raw_parts(info.slot_ranges, info.num_slot_ranges as usize)
            }
            _ => &[],
        }
    };
    let last = crate::keys::SLOTS as c_int - 1;
    ranges
        .iter()
        .flat_map(|range| range.start.max(0)..=range.end.min(last))
        .filter_map(|slot| u16::try_from(slot).ok())
        .collect()
}

/// A context of the module's own, detached from any client: kept to arm timers from callbacks
/// that get no context (a configuration change).
pub struct DetachedContext(*mut raw::RedisModuleCtx);

// SAFETY: only used on the server's main thread (load, callbacks, unload).
unsafe impl Send for DetachedContext {}

impl DetachedContext {
    pub fn new(ctx: &Context) -> DetachedContext {
        // SAFETY: the module's context at load.
        DetachedContext(unsafe { call!(RedisModule_GetDetachedThreadSafeContext(ctx.get_raw())) })
    }

    pub fn context(&self) -> Context {
        Context::new(self.0)
    }
}

impl Drop for DetachedContext {
    fn drop(&mut self) {
        // SAFETY: made by `new`, freed once, here.
        unsafe { call!(RedisModule_FreeThreadSafeContext(self.0)) };
    }
}

/// A value kept between callbacks that the server makes on its main thread only.
pub struct MainThread<T>(pub T);

// SAFETY: the server runs every module callback (commands, timers, events, unload) on its main
// thread; a `MainThread` value is only kept in statics those callbacks use.
unsafe impl<T> Send for MainThread<T> {}
