//! Announcing events: one JSON payload per event, published on the global channel (`events-channel`)
//! and with sharded pub/sub on the user's own channel, and appended to `events-stream` when set.

use crate::model::Event;
use crate::server::{self, string};
use crate::{config, keys, stats};
use redis_module::{CallOptionsBuilder, CallResult, Context};
use serde::Serialize;
use std::borrow::Cow;

/// The JSON payload. An id that is not UTF-8 appears with U+FFFD in place of invalid bytes, and
/// exactly, in base64, in `user_b64` / `device_b64` (present only then): distinct ids never
/// look alike to a consumer that reads those.
#[derive(Serialize)]
struct Payload<'a> {
    user: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_b64: Option<String>,
    status: &'static str,
    prev: &'static str,
    reason: &'static str,
    device: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_b64: Option<String>,
    devices: usize,
    last_seen: Option<i64>,
    ts: i64,
    seq: u64,
}

impl<'a> Payload<'a> {
    fn new(user: &'a [u8], e: &'a Event) -> Self {
        Payload {
            user: String::from_utf8_lossy(user),
            user_b64: exact(user),
            status: e.status.as_str(),
            prev: e.prev.as_str(),
            reason: e.reason.as_str(),
            device: String::from_utf8_lossy(&e.device),
            device_b64: exact(&e.device),
            devices: e.devices,
            last_seen: e.last_seen,
            ts: e.ts,
            seq: e.seq,
        }
    }
}

/// The id in base64 when it is not UTF-8 (JSON text cannot carry it as it is).
fn exact(id: &[u8]) -> Option<String> {
    std::str::from_utf8(id).is_err().then(|| base64(id))
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The payload of `event` as published.
pub fn json(user: &[u8], event: &Event) -> Vec<u8> {
    // Serializing plain strings and integers cannot fail.
    serde_json::to_vec(&Payload::new(user, event)).unwrap_or_default()
}

/// Publishes the user's events, in order.
pub fn publish(ctx: &Context, user: &[u8], events: &[Event]) {
    if events.is_empty() {
        return;
    }
    let global = config::events_channel();
    let stream = config::events_stream();
    let global = (!global.is_empty()).then(|| string(global.as_bytes()));
    let shard = string(&keys::user_channel(user));
    for event in events {
        let message = string(&json(user, event));
        if let Some(channel) = &global {
            server::publish(ctx, channel, &message, false);
        }
        server::publish(ctx, &shard, &message, true);
        if !stream.is_empty() {
            append(ctx, &stream, user, event);
        }
        stats::EVENTS_PUBLISHED.add(1);
    }
}

/// `XADD stream MAXLEN ~ n * field value ...`, replicated as the server rewrites it (with the
/// entry's explicit id). A key of another type refuses the entry; the event is still published.
fn append(ctx: &Context, stream: &str, user: &[u8], e: &Event) {
    let maxlen = config::events_stream_maxlen().to_string();
    let devices = e.devices.to_string();
    let last_seen = e.last_seen.map(|t| t.to_string()).unwrap_or_default();
    let ts = e.ts.to_string();
    let seq = e.seq.to_string();
    let args: [&[u8]; 23] = [
        stream.as_bytes(),
        b"MAXLEN",
        b"~",
        maxlen.as_bytes(),
        b"*",
        b"user",
        user,
        b"status",
        e.status.as_str().as_bytes(),
        b"prev",
        e.prev.as_str().as_bytes(),
        b"reason",
        e.reason.as_str().as_bytes(),
        b"device",
        &e.device,
        b"devices",
        devices.as_bytes(),
        b"last_seen",
        last_seen.as_bytes(),
        b"ts",
        ts.as_bytes(),
        b"seq",
        seq.as_bytes(),
    ];
    let options = CallOptionsBuilder::new()
        .replicate()
        .errors_as_replies()
        .build();
    let reply: CallResult = ctx.call_ext("XADD", &options, &args[..]);
    if let Err(e) = reply {
        crate::guard::log_warning(&format!(
            "presence: events-stream XADD failed: {}",
            e.to_utf8_string().unwrap_or_default()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn ids_that_are_not_utf8_are_given_exactly() {
        assert_eq!(exact(b"alice"), None);
        assert_eq!(exact(b"bad\xff").as_deref(), Some("YmFk/w=="));
        assert_eq!(exact(b"bad\xfe").as_deref(), Some("YmFk/g=="));
    }
}
