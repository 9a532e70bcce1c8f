//! How a [`Record`] is laid out as the fields of the user's hash.
//!
//! | field          | value                                       |
//! |----------------|---------------------------------------------|
//! | `since`        | ms when the current status began            |
//! | `last_seen`    | ms of the latest departure                  |
//! | `seq`          | number of the latest event announced        |
//! | `dev:<id>`     | `<connected_at>:<last_heartbeat>:<ttl>`     |
//! | `meta:<id>`    | the device's META JSON text (when given)    |
//!
//! Values are decimal text so the hash stays readable with `HGETALL` and small enough for the compact
//! listpack encoding. Decoding ignores fields it does not know or cannot read, so a hash edited by hand
//! never makes a command fail.

use crate::model::{Device, Millis, Record};
use std::collections::BTreeMap;

pub const SINCE: &[u8] = b"since";
pub const LAST_SEEN: &[u8] = b"last_seen";
pub const SEQ: &[u8] = b"seq";
const DEVICE_PREFIX: &[u8] = b"dev:";
const META_PREFIX: &[u8] = b"meta:";

/// Field name to value, in a stable order.
pub type Fields = BTreeMap<Vec<u8>, Vec<u8>>;

fn prefixed(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut field = Vec::with_capacity(prefix.len() + id.len());
    field.extend_from_slice(prefix);
    field.extend_from_slice(id);
    field
}

fn parse_millis(value: &[u8]) -> Option<Millis> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn format_device(d: &Device) -> Vec<u8> {
    format!("{}:{}:{}", d.connected_at, d.last_heartbeat, d.ttl).into_bytes()
}

fn parse_device(value: &[u8]) -> Option<Device> {
    let mut parts = value.split(|&b| b == b':').map(parse_millis);
    let connected_at = parts.next()??;
    let last_heartbeat = parts.next()??;
    let ttl = parts.next()??;
    if parts.next().is_some() || ttl <= 0 {
        return None;
    }
    Some(Device {
        connected_at,
        last_heartbeat,
        ttl,
        meta: None,
    })
}

/// Builds a record from the hash's fields.
pub fn decode<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Record {
    let mut record = Record::default();
    let mut metas: Vec<(&[u8], &[u8])> = Vec::new();
    for (field, value) in fields {
        if field == SINCE {
            record.since = parse_millis(value);
        } else if field == LAST_SEEN {
            record.last_seen = parse_millis(value);
        } else if field == SEQ {
            record.seq = parse_millis(value)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
        } else if let Some(id) = field.strip_prefix(DEVICE_PREFIX) {
            if let Some(device) = parse_device(value) {
                record.devices.insert(id.to_vec(), device);
            }
        } else if let Some(id) = field.strip_prefix(META_PREFIX) {
            metas.push((id, value));
        }
    }
    for (id, value) in metas {
        if let (Some(device), Ok(text)) = (record.devices.get_mut(id), std::str::from_utf8(value)) {
            device.meta = Some(text.to_owned());
        }
    }
    record
}

/// The hash fields that represent `record`.
pub fn encode(record: &Record) -> Fields {
    let mut fields = Fields::new();
    if let Some(since) = record.since {
        fields.insert(SINCE.to_vec(), since.to_string().into_bytes());
    }
    if let Some(seen) = record.last_seen {
        fields.insert(LAST_SEEN.to_vec(), seen.to_string().into_bytes());
    }
    if record.seq > 0 {
        fields.insert(SEQ.to_vec(), record.seq.to_string().into_bytes());
    }
    for (id, device) in &record.devices {
        fields.insert(prefixed(DEVICE_PREFIX, id), format_device(device));
        if let Some(meta) = &device.meta {
            fields.insert(prefixed(META_PREFIX, id), meta.clone().into_bytes());
        }
    }
    fields
}

/// What turns the fields of `before` into those of `after`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FieldChanges {
    pub set: Vec<(Vec<u8>, Vec<u8>)>,
    pub delete: Vec<Vec<u8>>,
}

impl FieldChanges {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }
}

pub fn changes(before: &Record, after: &Record) -> FieldChanges {
    let old = encode(before);
    let mut new = encode(after);
    let delete = old
        .keys()
        .filter(|field| !new.contains_key(*field))
        .cloned()
        .collect();
    new.retain(|field, value| old.get(field) != Some(value));
    FieldChanges {
        set: new.into_iter().collect(),
        delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut r = Record::default();
        r.connect(b"phone", 1000, Some("{\"os\":\"ios\"}".into()), 100, 8)
            .unwrap();
        r.connect(b"a:b\0\xff", 2000, None, 200, 8).unwrap();
        r.last_seen = Some(50);
        r.events.clear();
        r
    }

    fn as_slices(fields: &Fields) -> Vec<(&[u8], &[u8])> {
        fields
            .iter()
            .map(|(f, v)| (f.as_slice(), v.as_slice()))
            .collect()
    }

    #[test]
    fn records_round_trip() {
        let r = sample();
        assert_eq!(decode(as_slices(&encode(&r))), r);
        assert_eq!(
            decode(as_slices(&encode(&Record::default()))),
            Record::default()
        );
    }

    #[test]
    fn the_layout_is_readable() {
        let fields = encode(&sample());
        assert_eq!(fields[&b"dev:phone".to_vec()], b"100:100:1000");
        assert_eq!(fields[&b"meta:phone".to_vec()], b"{\"os\":\"ios\"}");
        assert_eq!(fields[&b"since".to_vec()], b"100");
        assert_eq!(fields[&b"last_seen".to_vec()], b"50");
    }

    #[test]
    fn unreadable_and_unknown_fields_are_ignored() {
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b"since", b"soon"),
            (b"dev:x", b"1:2"),
            (b"dev:y", b"1:2:3:4"),
            (b"dev:z", b"1:2:-5"),
            (b"meta:orphan", b"{}"),
            (b"other", b"1"),
            (b"dev:ok", b"1:2:3"),
        ];
        let r = decode(fields);
        assert_eq!(r.since, None);
        assert_eq!(r.devices.len(), 1);
        assert!(r.devices.contains_key(b"ok".as_slice()));
    }

    #[test]
    fn changes_touch_only_what_changed() {
        let before = sample();
        let mut after = before.clone();
        after.heartbeat(b"phone", None, 1000, 300, 8).unwrap();
        let c = changes(&before, &after);
        assert_eq!(
            c.set,
            vec![(b"dev:phone".to_vec(), b"100:300:1000".to_vec())]
        );
        assert!(c.delete.is_empty());

        let mut gone = after.clone();
        gone.disconnect(b"phone", 400);
        let c = changes(&after, &gone);
        assert_eq!(
            c.delete,
            vec![b"dev:phone".to_vec(), b"meta:phone".to_vec()]
        );
        assert_eq!(c.set, vec![(b"last_seen".to_vec(), b"400".to_vec())]);
        let mut last = gone.clone();
        last.disconnect(b"a:b\0\xff", 500);
        let c = changes(&gone, &last);
        // The user went offline: an event, so seq moves on from the first connect's 1.
        assert!(c.set.contains(&(b"seq".to_vec(), b"2".to_vec())), "{c:?}");
        assert!(changes(&gone, &gone).is_empty());
    }
}
