//! The module's keys: what it reads from them and writes to them. Every write goes through
//! [`effect::apply`] (or [`effect::call`] for settings), so each is replicated with explicit values
//! and announced as a keyspace event.
//!
//! - [`user`]: a user's record (the hash) and its device deadlines, read and written together;
//! - [`index`]: the per-slot due indexes and timers sets, as the sweep reads them;
//! - [`listings`]: the per-slot listings of online users and the directory that counts them;
//! - [`settings`]: privacy rules and contacts;
//! - [`repair`]: what the sweep and the reconciliation do when keys disagree;
//! - [`vanished`]: the users announced offline after their record vanished.

pub mod effect;
pub mod index;
pub mod listings;
pub mod repair;
pub mod settings;
pub mod user;
pub mod vanished;

use crate::model::Millis;

/// The module's time, in milliseconds since the epoch (see `clock`).
pub fn now() -> Millis {
    crate::clock::now()
}
