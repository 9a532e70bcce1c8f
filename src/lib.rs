//! presence: user presence inside Redis and Valkey.
//!
//! This file only registers the module: commands, configuration and start-up checks. The rules live
//! in `model`, the key layout in `keys`, `codec` and `store`, the handlers in `commands`; every
//! `unsafe` call to the server is in `server`.

#![deny(unsafe_code)]

pub mod args;
pub mod clock;
pub mod codec;
mod commands;
pub mod config;
mod deadlines;
pub mod error;
pub mod events;
mod guard;
pub mod keys;
mod lifecycle;
mod limits;
pub mod listing;
mod migration;
pub mod model;
mod reconcile;
mod reply;
#[allow(unsafe_code)]
mod server;
mod stats;
mod store;
mod sweep;

use commands::{devices, info, query};
use redis_module::{
    configuration::ConfigurationFlags, redis_module, Context, ContextFlags, Status,
};

// Unit tests and the fuzz targets run without a server, so they keep the system allocator.
#[cfg(not(any(test, fuzzing)))]
type Allocator = redis_module::alloc::RedisAlloc;
#[cfg(any(test, fuzzing))]
type Allocator = std::alloc::System;

/// A command handler run through [`guard::command`], so that no panic reaches the server.
macro_rules! guarded {
    ($name:expr, $handler:path) => {
        |ctx: &Context, args: Vec<redis_module::RedisString>| {
            guard::command(ctx, $name, args, $handler)
        }
    };
}

/// The module's version for `MODULE LIST`: the crate's, as major * 10000 + minor * 100 + patch
/// (0.1.0 is 100, 1.2.3 is 10203).
const VERSION: i32 = {
    const fn number(text: &str) -> i32 {
        let bytes = text.as_bytes();
        let mut value = 0;
        let mut i = 0;
        while i < bytes.len() {
            value = value * 10 + (bytes[i] - b'0') as i32;
            i += 1;
        }
        value
    }
    number(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + number(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + number(env!("CARGO_PKG_VERSION_PATCH"))
};

/// Describes every command to the server (syntax, arity, key specs, tips, ACL categories).
fn describe(ctx: &Context) -> Result<(), String> {
    let own_category =
        server::add_acl_category(ctx, info::ACL_CATEGORY).then_some(info::ACL_CATEGORY);
    for command in info::ALL {
        server::describe_command(ctx, command, own_category)?;
    }
    Ok(())
}

fn init(ctx: &Context, args: &[redis_module::RedisString]) -> Status {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    if let Err(problem) = config::check_module_args(&args) {
        guard::log_warning(&format!("presence: {problem}"));
        return Status::Err;
    }
    let cluster = ctx.get_flags().contains(ContextFlags::CLUSTER);
    config::CLUSTER_MODE.store(cluster, std::sync::atomic::Ordering::Relaxed);
    if cluster && !config::events_stream().is_empty() {
        guard::log_warning(&format!("presence: {}", error::Error::StreamInCluster));
        return Status::Err;
    }
    if let Err(missing) = server::check_functions() {
        guard::log_warning(&format!(
            "presence: this server lacks module API functions the module needs: {missing}"
        ));
        return Status::Err;
    }
    if let Err(problem) = describe(ctx) {
        guard::log_warning(&format!("presence: {problem}"));
        return Status::Err;
    }
    sweep::start(ctx);
    lifecycle::warn_about_eviction(ctx);
    if lifecycle::subscribe_to_other_events(ctx) == Status::Err {
        return Status::Err;
    }
    lifecycle::follow_slot_migrations(ctx)
}

/// The module is unloaded (`MODULE UNLOAD`, or a server that unloads its modules on shutdown):
/// stop the timer and free what the module holds outside the keyspace.
fn deinit(ctx: &Context) -> Status {
    sweep::stop(ctx);
    reconcile::release();
    store::vanished::forget_all();
    migration::forget_all();
    listing::clear_dirty();
    listing::directory().clear();
    listing::room_index().clear();
    config::EVENTS_CHANNEL.release();
    config::EVENTS_STREAM.release();
    Status::Ok
}

redis_module! {
    name: "presence",
    version: VERSION,
    allocator: (Allocator, Allocator {}),
    data_types: [],
    init: init,
    deinit: deinit,
    commands: [
        // Keys, arity and ACL categories come from `info` (see `describe`).
        [info::ONLINE.name, guarded!(info::ONLINE.name, devices::online), info::ONLINE.flags, 0, 0, 0, ""],
        [info::HEARTBEAT.name, guarded!(info::HEARTBEAT.name, devices::heartbeat), info::HEARTBEAT.flags, 0, 0, 0, ""],
        [info::OFFLINE.name, guarded!(info::OFFLINE.name, devices::offline), info::OFFLINE.flags, 0, 0, 0, ""],
        [info::GET.name, guarded!(info::GET.name, query::get), info::GET.flags, 0, 0, 0, ""],
        [info::BULK.name, guarded!(info::BULK.name, query::bulk), info::BULK.flags, 0, 0, 0, ""],
        [info::DEVICES.name, guarded!(info::DEVICES.name, query::devices), info::DEVICES.flags, 0, 0, 0, ""],
        [info::SWEEP.name, guarded!(info::SWEEP.name, commands::sweep::sweep), info::SWEEP.flags, 0, 0, 0, ""],
        [info::STATUS.name, guarded!(info::STATUS.name, commands::status::status), info::STATUS.flags, 0, 0, 0, ""],
        [info::ACTIVITY.name, guarded!(info::ACTIVITY.name, commands::status::activity), info::ACTIVITY.flags, 0, 0, 0, ""],
        [info::CONTEXT.name, guarded!(info::CONTEXT.name, commands::status::context), info::CONTEXT.flags, 0, 0, 0, ""],
        [info::INCONTEXT.name, guarded!(info::INCONTEXT.name, commands::status::in_context), info::INCONTEXT.flags, 0, 0, 0, ""],
        [info::PRIVACY.name, guarded!(info::PRIVACY.name, commands::privacy::privacy), info::PRIVACY.flags, 0, 0, 0, ""],
        [info::CONTACTS.name, guarded!(info::CONTACTS.name, commands::privacy::contacts), info::CONTACTS.flags, 0, 0, 0, ""],
        [info::FANOUT.name, guarded!(info::FANOUT.name, commands::privacy::fanout), info::FANOUT.flags, 0, 0, 0, ""],
        [info::CHANNEL.name, guarded!(info::CHANNEL.name, commands::privacy::channel), info::CHANNEL.flags, 0, 0, 0, ""],
        [info::JOIN.name, guarded!(info::JOIN.name, commands::rooms::join), info::JOIN.flags, 0, 0, 0, ""],
        [info::LEAVE.name, guarded!(info::LEAVE.name, commands::rooms::leave), info::LEAVE.flags, 0, 0, 0, ""],
        [info::ROOMS.name, guarded!(info::ROOMS.name, commands::rooms::rooms), info::ROOMS.flags, 0, 0, 0, ""],
        [info::TYPING.name, guarded!(info::TYPING.name, commands::rooms::typing), info::TYPING.flags, 0, 0, 0, ""],
        [info::TYPERS.name, guarded!(info::TYPERS.name, commands::rooms::typers), info::TYPERS.flags, 0, 0, 0, ""],
        [info::LIST.name, guarded!(info::LIST.name, commands::listing::list), info::LIST.flags, 0, 0, 0, ""],
        [info::COUNT.name, guarded!(info::COUNT.name, commands::listing::count), info::COUNT.flags, 0, 0, 0, ""],
        [info::CLOCK.name, guarded!(info::CLOCK.name, commands::sweep::clock), info::CLOCK.flags, 0, 0, 0, ""],
    ],
    event_handlers: [
        [@HASH @ZSET @GENERIC @EXPIRED @EVICTED: lifecycle::on_keyspace_event],
    ],
    configurations: [
        i64: [
            [config::TIMEOUT.name, &config::TIMEOUT, config::TIMEOUT.default, config::TIMEOUT.min, config::TIMEOUT.max, ConfigurationFlags::DEFAULT, None],
            [config::RETENTION.name, &config::RETENTION, config::RETENTION.default, config::RETENTION.min, config::RETENTION.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_DEVICES.name, &config::MAX_DEVICES, config::MAX_DEVICES.default, config::MAX_DEVICES.min, config::MAX_DEVICES.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_ROOMS.name, &config::MAX_ROOMS, config::MAX_ROOMS.default, config::MAX_ROOMS.min, config::MAX_ROOMS.max, ConfigurationFlags::DEFAULT, None],
            [config::TYPING_TIMEOUT.name, &config::TYPING_TIMEOUT, config::TYPING_TIMEOUT.default, config::TYPING_TIMEOUT.min, config::TYPING_TIMEOUT.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_BULK.name, &config::MAX_BULK, config::MAX_BULK.default, config::MAX_BULK.min, config::MAX_BULK.max, ConfigurationFlags::DEFAULT, None],
            [config::GRACE.name, &config::GRACE, config::GRACE.default, config::GRACE.min, config::GRACE.max, ConfigurationFlags::DEFAULT, None],
            [config::AWAY_AFTER.name, &config::AWAY_AFTER, config::AWAY_AFTER.default, config::AWAY_AFTER.min, config::AWAY_AFTER.max, ConfigurationFlags::DEFAULT, Some(Box::new(|_, _, _| { guard::callback("CONFIG SET away-after", sweep::recheck_all); }))],
            [config::SWEEP_INTERVAL.name, &config::SWEEP_INTERVAL, config::SWEEP_INTERVAL.default, config::SWEEP_INTERVAL.min, config::SWEEP_INTERVAL.max, ConfigurationFlags::DEFAULT, Some(Box::new(|_, _, _| { guard::callback("CONFIG SET sweep-interval", sweep::interval_changed); }))],
            [config::SWEEP_BUDGET.name, &config::SWEEP_BUDGET, config::SWEEP_BUDGET.default, config::SWEEP_BUDGET.min, config::SWEEP_BUDGET.max, ConfigurationFlags::DEFAULT, None],
            [config::EVENTS_STREAM_MAXLEN.name, &config::EVENTS_STREAM_MAXLEN, config::EVENTS_STREAM_MAXLEN.default, config::EVENTS_STREAM_MAXLEN.min, config::EVENTS_STREAM_MAXLEN.max, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            [config::EVENTS_CHANNEL.name, &config::EVENTS_CHANNEL, config::EVENTS_CHANNEL.default, ConfigurationFlags::DEFAULT, None],
            [config::EVENTS_STREAM.name, &config::EVENTS_STREAM, config::EVENTS_STREAM.default, ConfigurationFlags::DEFAULT, None],
            [config::PRIVACY_ONLINE.name, &config::PRIVACY_ONLINE, config::PRIVACY_ONLINE.default, ConfigurationFlags::DEFAULT, None],
            [config::PRIVACY_LASTSEEN.name, &config::PRIVACY_LASTSEEN, config::PRIVACY_LASTSEEN.default, ConfigurationFlags::DEFAULT, None],
        ],
        bool: [
            [config::DEVICE_EVENTS.name, &config::DEVICE_EVENTS, config::DEVICE_EVENTS.default, ConfigurationFlags::DEFAULT, None],
            [config::ROOM_EVENTS.name, &config::ROOM_EVENTS, config::ROOM_EVENTS.default, ConfigurationFlags::DEFAULT, None],
            [config::KEEP_MANUAL_STATUS.name, &config::KEEP_MANUAL_STATUS, config::KEEP_MANUAL_STATUS.default, ConfigurationFlags::DEFAULT, None],
            [config::ACTIVITY_ENDS_AWAY.name, &config::ACTIVITY_ENDS_AWAY, config::ACTIVITY_ENDS_AWAY.default, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [],
        module_args_as_configuration: true,
    ]
}
