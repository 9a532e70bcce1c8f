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
mod events;
mod guard;
mod info;
pub mod keys;
mod lifecycle;
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
        guard::log_warning(&format!("presence: {}", config::STREAM_IN_CLUSTER));
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
            ["timeout", &config::TIMEOUT, config::TIMEOUT_DEFAULT, config::TIMEOUT_MIN, config::TIMEOUT_MAX, ConfigurationFlags::DEFAULT, None],
            ["retention", &config::RETENTION, config::RETENTION_DEFAULT, config::RETENTION_MIN, config::RETENTION_MAX, ConfigurationFlags::DEFAULT, None],
            ["max-devices", &config::MAX_DEVICES, config::MAX_DEVICES_DEFAULT, config::MAX_DEVICES_MIN, config::MAX_DEVICES_MAX, ConfigurationFlags::DEFAULT, None],
            ["max-bulk", &config::MAX_BULK, config::MAX_BULK_DEFAULT, config::MAX_BULK_MIN, config::MAX_BULK_MAX, ConfigurationFlags::DEFAULT, None],
            ["grace", &config::GRACE, config::GRACE_DEFAULT, config::GRACE_MIN, config::GRACE_MAX, ConfigurationFlags::DEFAULT, None],
            ["away-after", &config::AWAY_AFTER, config::AWAY_AFTER_DEFAULT, config::AWAY_AFTER_MIN, config::AWAY_AFTER_MAX, ConfigurationFlags::DEFAULT, Some(Box::new(|_, _, _| { guard::callback("CONFIG SET away-after", sweep::recheck_all); }))],
            ["sweep-interval", &config::SWEEP_INTERVAL, config::SWEEP_INTERVAL_DEFAULT, config::SWEEP_INTERVAL_MIN, config::SWEEP_INTERVAL_MAX, ConfigurationFlags::DEFAULT, Some(Box::new(|_, _, _| { guard::callback("CONFIG SET sweep-interval", sweep::interval_changed); }))],
            ["sweep-budget", &config::SWEEP_BUDGET, config::SWEEP_BUDGET_DEFAULT, config::SWEEP_BUDGET_MIN, config::SWEEP_BUDGET_MAX, ConfigurationFlags::DEFAULT, None],
            ["events-stream-maxlen", &config::EVENTS_STREAM_MAXLEN, config::STREAM_MAXLEN_DEFAULT, config::STREAM_MAXLEN_MIN, config::STREAM_MAXLEN_MAX, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["events-channel", &config::EVENTS_CHANNEL, config::EVENTS_CHANNEL_DEFAULT, ConfigurationFlags::DEFAULT, None],
            ["events-stream", &config::EVENTS_STREAM, "", ConfigurationFlags::DEFAULT, None],
        ],
        bool: [
            ["device-events", &config::DEVICE_EVENTS, false, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [],
        module_args_as_configuration: true,
    ]
}
