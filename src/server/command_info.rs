//! Hands a command's description (`commands::info`) to the server: `RedisModule_SetCommandInfo`
//! (Redis 7.0 and later) and, where the server has it, `RedisModule_SetCommandACLCategories`.
//! The server copies everything it is given, so the C strings and arrays built here live only
//! for the call.

use super::{call, call_if_present};
use crate::commands::info::{Arg, Command, Kind};
use redis_module::{raw, Context};
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::ptr;

/// The layout of the structures below, as the server reads them.
const VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Owns the C strings and argument arrays the pointers of a description point into.
#[derive(Default)]
struct Strings {
    texts: Vec<CString>,
    arrays: Vec<Vec<raw::RedisModuleCommandArg>>,
}

impl Strings {
    /// A C string for `text` (the descriptions are written here and hold no NUL byte), or NULL
    /// for an empty one.
    fn text(&mut self, text: &str) -> *const c_char {
        if text.is_empty() {
            return ptr::null();
        }
        let Ok(text) = CString::new(text) else {
            return ptr::null();
        };
        let pointer = text.as_ptr();
        self.texts.push(text);
        pointer
    }

    /// The server's form of `args`, ended by an all-zero entry.
    fn args(&mut self, args: &[Arg]) -> *mut raw::RedisModuleCommandArg {
        let mut array: Vec<raw::RedisModuleCommandArg> =
            args.iter().map(|arg| self.arg(arg)).collect();
        // SAFETY: all-zero is the array's documented end marker (NULL pointers, zero numbers).
        array.push(unsafe { std::mem::zeroed() });
        let pointer = array.as_mut_ptr();
        // Moving the Vec into `arrays` keeps its heap buffer where `pointer` points.
        self.arrays.push(array);
        pointer
    }

    fn arg(&mut self, arg: &Arg) -> raw::RedisModuleCommandArg {
        let (type_, key_spec_index, subargs) = match arg.kind {
            Kind::Key(spec) => (
                raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                spec as c_int,
                ptr::null_mut(),
            ),
            Kind::String => (
                raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                -1,
                ptr::null_mut(),
            ),
            Kind::Integer => (
                raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                -1,
                ptr::null_mut(),
            ),
            Kind::PureToken => (
                raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
                -1,
                ptr::null_mut(),
            ),
            Kind::OneOf(choices) => (
                raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
                -1,
                self.args(choices),
            ),
        };
        let mut flags = raw::REDISMODULE_CMD_ARG_NONE;
        if arg.optional {
            flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
        }
        if arg.multiple {
            flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
        }
        raw::RedisModuleCommandArg {
            name: self.text(arg.name),
            type_,
            key_spec_index,
            token: arg.token.map_or(ptr::null(), |token| self.text(token)),
            summary: ptr::null(),
            since: ptr::null(),
            flags: flags as c_int,
            deprecated_since: ptr::null(),
            subargs,
            display_text: ptr::null(),
        }
    }
}

/// Gives the server the description of `command`, registered already; `own_category` is the
/// module's ACL category when the server accepted it. Fails with what went wrong.
pub fn describe_command(
    ctx: &Context,
    command: &Command,
    own_category: Option<&str>,
) -> Result<(), String> {
    let mut strings = Strings::default();
    let name = strings.text(command.name);
    // SAFETY: a live context in OnLoad; `name` is a C string owned by `strings`.
    let handle = unsafe { call!(RedisModule_GetCommand(ctx.get_raw(), name)) };
    if handle.is_null() {
        return Err(format!("{} is not registered", command.name));
    }
    let mut key_specs: Vec<raw::RedisModuleCommandKeySpec> = command
        .keys
        .iter()
        .map(|spec| raw::RedisModuleCommandKeySpec {
            notes: strings.text(spec.notes),
            flags: spec.flags,
            begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
            bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
                index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 {
                    pos: spec.first,
                },
            },
            find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
            fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
                range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                    lastkey: spec.last,
                    keystep: 1,
                    limit: 0,
                },
            },
        })
        .collect();
    // SAFETY: all-zero (begin_search_type 0) is the array's documented end marker.
    key_specs.push(unsafe { std::mem::zeroed() });
    let args = if command.args.is_empty() {
        ptr::null_mut()
    } else {
        strings.args(command.args)
    };
    let info = raw::RedisModuleCommandInfo {
        version: &VERSION,
        summary: strings.text(command.summary),
        complexity: strings.text(command.complexity),
        since: strings.text(command.since),
        history: ptr::null_mut(),
        tips: strings.text(command.tips),
        arity: command.arity,
        key_specs: if command.keys.is_empty() {
            ptr::null_mut()
        } else {
            key_specs.as_mut_ptr()
        },
        args,
    };
    // SAFETY: `handle` is this module's command; every pointer in `info` points into `strings`,
    // `key_specs` or `VERSION`, which outlive the call (the server copies what it keeps).
    if unsafe { call!(RedisModule_SetCommandInfo(handle, &info)) } != raw::REDISMODULE_OK as c_int {
        return Err(format!(
            "the server refused the description of {} (see its log)",
            command.name
        ));
    }
    let categories = match own_category {
        Some(own) => format!("{} {own}", command.acl),
        None => command.acl.to_owned(),
    };
    let categories = strings.text(&categories);
    // SAFETY: as above; absent before Redis 7.2, where module commands have no categories.
    match unsafe { call_if_present!(RedisModule_SetCommandACLCategories(handle, categories)) } {
        Some(status) if status != raw::REDISMODULE_OK as c_int => Err(format!(
            "the server refused the ACL categories of {}",
            command.name
        )),
        _ => Ok(()),
    }
}

/// Adds the module's own ACL category; whether the server has and accepted it (Valkey, and
/// Redis from 7.4).
pub fn add_acl_category(ctx: &Context, name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: a live context in OnLoad; `name` lives until the end of the call.
    let status =
        unsafe { call_if_present!(RedisModule_AddACLCategory(ctx.get_raw(), name.as_ptr())) };
    status == Some(raw::REDISMODULE_OK as c_int)
}
