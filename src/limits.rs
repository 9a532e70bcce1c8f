//! The limits the module enforces on what clients give it (the README's Commands and Errors
//! sections state them).

use crate::model::Millis;

/// Ids (users, devices) are binary-safe strings of 1 to this many bytes.
pub const MAX_ID_LEN: usize = 512;
/// Largest META document, in bytes.
pub const MAX_META_LEN: usize = 4096;
/// Shortest and longest device TTL (the `timeout` configuration shares the range).
pub const MIN_TTL: Millis = 100;
pub const MAX_TTL: Millis = 7 * 24 * 3600 * 1000;
/// Most scopes a user may be in, and the longest scope name, in bytes.
pub const MAX_SCOPES: usize = 16;
pub const MAX_SCOPE_LEN: usize = 128;
/// Longest member data a device gives a room (PRESENCE.JOIN's DATA), in bytes.
pub const MAX_DATA_LEN: usize = 1024;
/// Longest custom status message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 256;
/// Longest duration of a manual status (FOR), and of `away-after`: 30 days.
pub const MAX_FOR: Millis = 30 * 24 * 3600 * 1000;
/// Most devices one PRESENCE.SWEEP may remove.
pub const MAX_SWEEP_LIMIT: i64 = 100_000_000;
