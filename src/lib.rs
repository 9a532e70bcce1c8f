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
mod events;
mod guard;
pub mod keys;
mod lifecycle;
mod limits;
pub mod listing;
pub mod model;
mod reconcile;
mod reply;
#[allow(unsafe_code)]
mod server;
mod stats;
mod store;
mod sweep;

use commands::{devices, query};
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
    ($name:literal, $handler:path) => {
        |ctx: &Context, args: Vec<redis_module::RedisString>| {
            guard::command(ctx, $name, args, $handler)
        }
    };
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
    sweep::start(ctx);
    lifecycle::warn_about_eviction(ctx);
    lifecycle::subscribe_to_other_events(ctx)
}

/// The module is unloaded (`MODULE UNLOAD`, or a server that unloads its modules on shutdown):
/// stop the timer and free what the module holds outside the keyspace.
fn deinit(ctx: &Context) -> Status {
    sweep::stop(ctx);
    reconcile::release();
    store::vanished::forget_all();
    listing::clear_dirty();
    listing::directory().clear();
    config::EVENTS_CHANNEL.release();
    config::EVENTS_STREAM.release();
    Status::Ok
}

redis_module! {
    name: "presence",
    version: 1,
    allocator: (Allocator, Allocator {}),
    data_types: [],
    init: init,
    deinit: deinit,
    commands: [
        ["presence.online", guarded!("presence.online", devices::online), "write deny-oom fast", 1, 1, 1, ""],
        ["presence.heartbeat", guarded!("presence.heartbeat", devices::heartbeat), "write deny-oom fast", 1, 1, 1, ""],
        ["presence.offline", guarded!("presence.offline", devices::offline), "write fast", 1, 1, 1, ""],
        ["presence.get", guarded!("presence.get", query::get), "readonly fast", 1, 1, 1, ""],
        ["presence.bulk", guarded!("presence.bulk", query::bulk), "readonly getkeys-api", 1, -1, 1, ""],
        ["presence.devices", guarded!("presence.devices", query::devices), "readonly fast", 1, 1, 1, ""],
        ["presence.sweep", guarded!("presence.sweep", commands::sweep::sweep), "write", 0, 0, 0, ""],
        ["presence.status", guarded!("presence.status", commands::status::status), "write deny-oom fast", 1, 1, 1, ""],
        ["presence.activity", guarded!("presence.activity", commands::status::activity), "write deny-oom fast", 1, 1, 1, ""],
        ["presence.context", guarded!("presence.context", commands::status::context), "write deny-oom fast", 1, 1, 1, ""],
        ["presence.incontext", guarded!("presence.incontext", commands::status::in_context), "readonly fast", 1, 1, 1, ""],
        ["presence.privacy", guarded!("presence.privacy", commands::privacy::privacy), "write deny-oom fast", 1, 1, 1, ""],
        ["presence.contacts", guarded!("presence.contacts", commands::privacy::contacts), "write deny-oom", 1, 1, 1, ""],
        ["presence.list", guarded!("presence.list", commands::listing::list), "readonly", 0, 0, 0, ""],
        ["presence.count", guarded!("presence.count", commands::listing::count), "readonly fast", 0, 0, 0, ""],
        ["presence.clock", guarded!("presence.clock", commands::sweep::clock), "readonly fast", 0, 0, 0, ""],
    ],
    event_handlers: [
        [@ZSET @GENERIC @EXPIRED @EVICTED: lifecycle::on_keyspace_event],
    ],
    configurations: [
        i64: [
            [config::TIMEOUT.name, &config::TIMEOUT, config::TIMEOUT.default, config::TIMEOUT.min, config::TIMEOUT.max, ConfigurationFlags::DEFAULT, None],
            [config::RETENTION.name, &config::RETENTION, config::RETENTION.default, config::RETENTION.min, config::RETENTION.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_DEVICES.name, &config::MAX_DEVICES, config::MAX_DEVICES.default, config::MAX_DEVICES.min, config::MAX_DEVICES.max, ConfigurationFlags::DEFAULT, None],
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
        ],
        bool: [
            [config::DEVICE_EVENTS.name, &config::DEVICE_EVENTS, config::DEVICE_EVENTS.default, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [],
        module_args_as_configuration: true,
    ]
}
