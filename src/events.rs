//! Announcing events: one JSON payload per event, published on the global channel (`events-channel`)
//! and with sharded pub/sub on the user's own channel, and appended to `events-stream` when set;
//! and one per room event, on the room's channel.

use crate::model::{Event, Reason, RoomChange, RoomEvent, Status, View};
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
    message: Option<&'a str>,
    scopes: Vec<Cow<'a, str>>,
    /// The device's META, a JSON object, as it was given (connect events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a serde_json::value::RawValue>,
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
            message: e.message.as_deref(),
            scopes: e
                .scopes
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect(),
            // META was checked to be a JSON object when it was given.
            meta: e.meta.as_deref().and_then(|m| serde_json::from_str(m).ok()),
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

/// An event payload as this module publishes it, read back: the user and the event. `None` for
/// anything else (not JSON, a field missing or of the wrong kind).
pub fn parse(payload: &[u8]) -> Option<(Vec<u8>, Event)> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let object = value.as_object()?;
    let text = |name: &str| object.get(name).and_then(serde_json::Value::as_str);
    let id = |name: &str| match text(&format!("{name}_b64")) {
        Some(coded) => unbase64(coded),
        None => text(name).map(|t| t.as_bytes().to_vec()),
    };
    let status = |name: &str| Status::parse(text(name)?.as_bytes());
    let scopes = match object.get("scopes") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(|s| s.as_bytes().to_vec()))
            .collect::<Option<Vec<_>>>()?,
        None => Vec::new(),
        Some(_) => return None,
    };
    let event = Event {
        status: status("status")?,
        prev: status("prev")?,
        reason: Reason::parse(text("reason")?)?,
        device: id("device").unwrap_or_default(),
        devices: usize::try_from(object.get("devices")?.as_u64()?).ok()?,
        last_seen: object.get("last_seen").and_then(serde_json::Value::as_i64),
        message: text("message").map(str::to_owned),
        scopes,
        meta: object.get("meta").map(|m| m.to_string()),
        ts: object.get("ts")?.as_i64()?,
        seq: object.get("seq")?.as_u64()?,
    };
    Some((id("user")?, event))
}

/// What a viewer sees of a user now, as JSON (the fields of an event that describe a state).
pub fn view_json(user: &[u8], view: &View) -> Vec<u8> {
    #[derive(Serialize)]
    struct Seen<'a> {
        user: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_b64: Option<String>,
        status: &'static str,
        devices: usize,
        last_seen: Option<i64>,
        message: Option<&'a str>,
        scopes: Vec<Cow<'a, str>>,
    }
    let seen = Seen {
        user: String::from_utf8_lossy(user),
        user_b64: exact(user),
        status: view.status.public().as_str(),
        devices: view.devices,
        last_seen: view.last_seen,
        message: view.message.as_deref(),
        scopes: view
            .scopes
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect(),
    };
    serde_json::to_vec(&seen).unwrap_or_default()
}

/// Standard base64 decoded (`None` for text that is not).
fn unbase64(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= digit(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..=take]);
    }
    Some(out)
}

/// The JSON payload of a room event.
#[derive(Serialize)]
struct RoomPayload<'a> {
    room: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_b64: Option<String>,
    user: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_b64: Option<String>,
    event: &'static str,
    reason: &'static str,
    device: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_b64: Option<String>,
    devices: usize,
    status: &'static str,
    message: Option<&'a str>,
    /// The device's member data, a JSON object as it was given (join and update).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::value::RawValue>,
    /// Typing events only.
    #[serde(skip_serializing_if = "Option::is_none")]
    typing: Option<bool>,
    ts: i64,
    seq: u64,
}

/// The payload of a room event as published.
pub fn room_json(user: &[u8], e: &RoomEvent) -> Vec<u8> {
    let payload = RoomPayload {
        room: String::from_utf8_lossy(&e.room),
        room_b64: exact(&e.room),
        user: String::from_utf8_lossy(user),
        user_b64: exact(user),
        event: e.change.as_str(),
        reason: e.reason.as_str(),
        device: String::from_utf8_lossy(&e.device),
        device_b64: exact(&e.device),
        devices: e.devices,
        status: e.status.as_str(),
        message: e.message.as_deref(),
        // DATA was checked to be a JSON object when it was given.
        data: e.data.as_deref().and_then(|d| serde_json::from_str(d).ok()),
        typing: (e.change == RoomChange::Typing).then_some(e.typing),
        ts: e.ts,
        seq: e.seq,
    };
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// Publishes the user's room events, in order, each on its room's channel (with plain pub/sub:
/// a room's members live in every slot, so its subscribers listen on any node of a cluster).
pub fn publish_rooms(ctx: &Context, user: &[u8], events: &[RoomEvent]) {
    if events.is_empty() || !config::room_events() {
        return;
    }
    for event in events {
        let channel = string(&keys::room_channel(&event.room));
        server::publish(ctx, &channel, &string(&room_json(user, event)), false);
        stats::ROOM_EVENTS_PUBLISHED.add(1);
    }
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
    let scopes = serde_json::to_string(
        &e.scopes
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    let args: [&[u8]; 29] = [
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
        b"message",
        e.message.as_deref().unwrap_or_default().as_bytes(),
        b"scopes",
        scopes.as_bytes(),
        b"meta",
        e.meta.as_deref().unwrap_or_default().as_bytes(),
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
    fn base64_decodes_what_it_encodes() {
        for bytes in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"bad\xff",
            b"\x00\x01\x02\x03",
        ] {
            assert_eq!(unbase64(&base64(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(unbase64("Zm9v!"), None);
    }

    #[test]
    fn a_payload_reads_back_as_the_event_it_was() {
        let event = Event {
            status: Status::Busy,
            prev: Status::Online,
            reason: Reason::Manual,
            device: b"ph\xffone".to_vec(),
            devices: 2,
            last_seen: Some(5),
            message: Some("In a meeting".into()),
            scopes: vec![b"team".to_vec()],
            meta: Some(r#"{"os":"ios"}"#.into()),
            ts: 7,
            seq: 7001,
        };
        let payload = json(b"al\xffice", &event);
        assert_eq!(parse(&payload), Some((b"al\xffice".to_vec(), event)));
        assert_eq!(parse(b"{}"), None);
        assert_eq!(parse(b"[1]"), None);
    }

    #[test]
    fn ids_that_are_not_utf8_are_given_exactly() {
        assert_eq!(exact(b"alice"), None);
        assert_eq!(exact(b"bad\xff").as_deref(), Some("YmFk/w=="));
        assert_eq!(exact(b"bad\xfe").as_deref(), Some("YmFk/g=="));
    }
}
