//! The `INFO presence` section.

use crate::{guard, listing, stats};
use redis_module::{InfoContext, RedisResult};
use redis_module_macros::info_command_handler;

#[info_command_handler]
fn presence_info(ctx: &InfoContext, for_crash_report: bool) -> RedisResult<()> {
    guard::callback("INFO", || section(ctx, for_crash_report)).unwrap_or(Ok(()))
}

fn section(ctx: &InfoContext, for_crash_report: bool) -> RedisResult<()> {
    let (clock_offset, master_skew) = crate::clock::offsets();
    let fields: [(&str, i64); 15] = [
        ("users_online", stats::USERS_ONLINE.get()),
        ("devices_online", stats::DEVICES_ONLINE.get()),
        ("heartbeats", stats::HEARTBEATS.get()),
        ("connects", stats::CONNECTS.get()),
        ("disconnects", stats::DISCONNECTS.get()),
        ("timeouts", stats::TIMEOUTS.get()),
        ("events_published", stats::EVENTS_PUBLISHED.get()),
        ("sweep_runs", stats::SWEEP_RUNS.get()),
        ("sweep_last_us", stats::SWEEP_LAST_US.get()),
        ("sweep_lag_ms", stats::SWEEP_LAG_MS.get()),
        ("reconcile_passes", stats::RECONCILE_PASSES.get()),
        ("repairs", stats::REPAIRS.get()),
        ("panics", stats::PANICS.get()),
        ("clock_offset_ms", clock_offset),
        ("master_clock_skew_ms", master_skew.unwrap_or(0)),
    ];
    let mut section = ctx.builder().add_section("");
    for (name, value) in fields {
        section = section.field(name, value)?;
    }
    // Not in a crash report: the directory's lock might be held by the code that crashed.
    if !for_crash_report {
        let directory = listing::directory();
        let listed = i64::try_from(directory.count(None)).unwrap_or(i64::MAX);
        let scopes = directory.scopes() as i64;
        drop(directory);
        section = section.field("listed", listed)?.field("scopes", scopes)?;
    }
    section.build_section()?.build_info()?;
    Ok(())
}
