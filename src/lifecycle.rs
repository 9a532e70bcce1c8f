//! Reactions to server events: what the sweep, the gauges and the listing directory must redo when
//! the data changed under them (loading, promotion, flush, SWAPDB), and the keyspace notifications
//! that keep the listing directory in step with the listing keys.

use crate::{clock, guard, keys, listing, migration, reconcile, server, store, sweep};
use redis_module::server_events::{FlushSubevent, LoadingSubevent, ServerRole};
use redis_module::{raw, Context, ContextFlags, NotifyEvent, Status};
use redis_module_macros::{
    config_changed_event_handler, cron_event_handler, flush_event_handler, loading_event_handler,
    role_changed_event_handler,
};

/// Recounts the gauges and makes the sweep look at every slot again.
fn resync(ctx: &Context) {
    sweep::recheck_all();
    reconcile::restart();
    store::index::census(ctx);
}

/// The keyspace was replaced (loaded, flushed, swapped) without a notification per key: redo
/// everything the module derives from it.
fn reread_all(ctx: &Context) {
    resync(ctx);
    store::listings::rebuild_directory(ctx);
}

/// Keyspace notifications: a record or a listing key of everyone in database 0 changed by other
/// means than the module's writes (marked for the room index or the directory to read again
/// once), or a key the sweep reads was restored (resharding moved it here: the sweep must look
/// at its slot).
pub fn on_keyspace_event(ctx: &Context, _kind: NotifyEvent, event: &str, key: &[u8]) {
    guard::callback("a keyspace notification", || {
        keyspace_event(ctx, event, key)
    });
}

fn keyspace_event(ctx: &Context, event: &str, key: &[u8]) {
    if server::selected_db(ctx) != 0 || store::effect::own_write_in_progress() {
        return;
    }
    // While loading, nothing is followed key by key: everything is read again at the end.
    let loading = ctx.get_flags().contains(ContextFlags::LOADING);
    if let Some(user) = keys::parse_user_key(key) {
        // A slot being imported is read whole when the import ends.
        if !loading && !migration::importing(keys::slot(user)) {
            listing::mark_user_stale(user);
        }
        // A master makes the listings what the record says, or takes a user whose record
        // vanished out of them (its sweep writes). A TTL set by hand is left to run.
        let content = matches!(
            event,
            "del" | "expired" | "evicted" | "restore" | "hset" | "hdel" | "rename_to"
        );
        if content && !loading && ctx.get_flags().contains(ContextFlags::MASTER) {
            reconcile::record_changed(user);
        }
        return;
    }
    let listing = keys::parse_listing_key(key);
    // Resharding restores a slot's keys here: its due index and timers set, and its listing of
    // everyone, whose users the sweep checks for idleness.
    let restored_index = match (event, listing) {
        ("restore", Some((slot, None))) => Some(slot),
        ("restore" | "del" | "expired" | "evicted", _) => keys::parse_index_key(key),
        _ => None,
    };
    if let Some((slot, None)) = listing {
        if !loading && !migration::importing(slot) {
            listing::mark_dirty(slot);
        }
    }
    if let Some(slot) = restored_index {
        sweep::recheck(slot);
    }
}

#[loading_event_handler]
fn on_loading(ctx: &Context, event: LoadingSubevent) {
    if event == LoadingSubevent::Ended {
        guard::callback("the end of loading", || reread_all(ctx));
    }
}

#[role_changed_event_handler]
fn on_role_changed(ctx: &Context, role: ServerRole) {
    // A promoted replica holds keys it never wrote: find their deadlines before sweeping.
    if role == ServerRole::Primary {
        clock::promoted();
        guard::callback("a promotion", || resync(ctx));
    } else {
        clock::demoted();
    }
}

#[flush_event_handler]
fn on_flush(ctx: &Context, event: FlushSubevent) {
    if event == FlushSubevent::Ended {
        guard::callback("a flush", || reread_all(ctx));
    }
}

#[cron_event_handler]
fn on_cron(ctx: &Context, _hz: u64) {
    guard::callback("the sweep's watchdog", || sweep::watchdog(ctx));
}

#[config_changed_event_handler]
fn on_config_changed(ctx: &Context, names: &[&str]) {
    if names.iter().any(|name| name.starts_with("maxmemory")) {
        guard::callback("a configuration change", || warn_about_eviction(ctx));
    }
}

/// Logs a warning when the server may evict the module's keys (at load, and when `maxmemory`
/// or `maxmemory-policy` changes): what each policy costs is in the README.
pub fn warn_about_eviction(ctx: &Context) {
    let setting = |name: &str| -> Option<String> {
        match ctx.call("CONFIG", &["GET", name][..]).ok()? {
            redis_module::RedisValue::Array(items) => match items.get(1)? {
                redis_module::RedisValue::SimpleString(s)
                | redis_module::RedisValue::BulkString(s) => Some(s.clone()),
                redis_module::RedisValue::StringBuffer(b) => {
                    Some(String::from_utf8_lossy(b).into_owned())
                }
                _ => None,
            },
            _ => None,
        }
    };
    let (Some(maxmemory), Some(policy)) = (setting("maxmemory"), setting("maxmemory-policy"))
    else {
        return;
    };
    if maxmemory == "0" || policy == "noeviction" {
        return;
    }
    let cost = if policy.starts_with("allkeys") {
        "any presence key may be evicted: users vanish from listings and devices are announced \
         offline late or (when both their record and their index entry go) never"
    } else {
        "the records of offline users (the only presence keys with a TTL) may be evicted: \
         their last_seen is lost"
    };
    guard::log_warning(&format!(
        "presence: maxmemory-policy is {policy} with maxmemory {maxmemory}: {cost}; the module \
         repairs what remains (see the README, Memory and eviction); noeviction keeps all of it"
    ));
}

/// Subscribes to the server events the crate has no wrapper for: shutdown (stop the sweep timer,
/// so a server that unloads its modules on the way out, as Valkey does, can unload this one) and
/// SWAPDB (database 0 changed all at once, without a notification per key).
pub fn subscribe_to_other_events(ctx: &Context) -> Status {
    extern "C" fn on_shutdown(
        ctx: *mut raw::RedisModuleCtx,
        _event: raw::RedisModuleEvent,
        _subevent: u64,
        _data: *mut std::ffi::c_void,
    ) {
        guard::callback("shutdown", || sweep::stop(&Context::new(ctx)));
    }
    extern "C" fn on_swapdb(
        ctx: *mut raw::RedisModuleCtx,
        _event: raw::RedisModuleEvent,
        _subevent: u64,
        _data: *mut std::ffi::c_void,
    ) {
        guard::callback("SWAPDB", || reread_all(&Context::new(ctx)));
    }
    if server::subscribe_to_server_event(ctx, raw::REDISMODULE_EVENT_SHUTDOWN, on_shutdown)
        && server::subscribe_to_server_event(ctx, raw::REDISMODULE_EVENT_SWAPDB, on_swapdb)
    {
        Status::Ok
    } else {
        Status::Err
    }
}

/// On a Valkey with atomic slot migration: declares that the module handles it and follows the
/// imports (see `migration`). Elsewhere nothing. Fails only if the server took the declaration
/// but refused the event.
pub fn follow_slot_migrations(ctx: &Context) -> Status {
    extern "C" fn on_slot_migration(
        _ctx: *mut raw::RedisModuleCtx,
        _event: raw::RedisModuleEvent,
        subevent: u64,
        data: *mut std::ffi::c_void,
    ) {
        guard::callback("a slot migration", || {
            slot_migration(subevent, server::migrated_slots(data))
        });
    }
    if !server::opt_in_to_atomic_slot_migration(ctx) {
        return Status::Ok;
    }
    if server::subscribe_to_server_event(ctx, server::slot_migration::EVENT, on_slot_migration) {
        Status::Ok
    } else {
        Status::Err
    }
}

fn slot_migration(subevent: u64, slots: Vec<u16>) {
    use server::slot_migration::{IMPORT_ABORTED, IMPORT_COMPLETED, IMPORT_STARTED};
    match subevent {
        IMPORT_STARTED => migration::import_started(slots),
        IMPORT_COMPLETED => {
            // The slots are this node's now: list their users and sweep them at once.
            migration::import_ended(&slots);
            for slot in slots {
                listing::mark_dirty(slot);
                listing::mark_slot_stale(slot);
                sweep::recheck(slot);
            }
        }
        // The server drops what arrived; whatever the listings saw of it is read again.
        IMPORT_ABORTED => {
            migration::import_ended(&slots);
            for slot in slots {
                listing::mark_dirty(slot);
                listing::mark_slot_stale(slot);
            }
        }
        _ => {}
    }
}
