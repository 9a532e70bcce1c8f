//! Parsing of command arguments. Pure: arguments are byte slices, errors are the messages clients get.
//!
//! Every check happens here, before a command touches a key, so a refused command changes nothing.

use crate::listing::{self, Position};
use crate::model::{Audience, Millis, Status};

/// Ids (users, devices) are binary-safe strings of 1 to this many bytes.
pub const MAX_ID_LEN: usize = 512;
/// Largest META document, in bytes.
pub const MAX_META_LEN: usize = 4096;
/// Shortest and longest device TTL (the `timeout` configuration shares the range).
pub const MIN_TTL: Millis = 100;
pub const MAX_TTL: Millis = 7 * 24 * 3600 * 1000;

/// An error reply, already in the form clients see (`ERR ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl ArgError {
    fn new(message: impl std::fmt::Display) -> Self {
        ArgError(format!("ERR {message}"))
    }
}

pub type Parsed<T> = Result<T, ArgError>;

/// A client-given value shown inside an error message: printable ASCII, other bytes as `\xHH`,
/// at most 64 bytes of it. (Error replies must be one line, and the module crate passes only
/// ASCII through intact.)
pub fn shown(bytes: &[u8]) -> String {
    const LIMIT: usize = 64;
    let mut text = String::new();
    for &b in &bytes[..bytes.len().min(LIMIT)] {
        if b.is_ascii_graphic() || b == b' ' {
            text.push(char::from(b));
        } else {
            text.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > LIMIT {
        text.push_str("...");
    }
    text
}

/// Checks the length of a user or device id; `what` names it in the error.
pub fn id<'a>(what: &str, value: &'a [u8]) -> Parsed<&'a [u8]> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(ArgError::new(format_args!(
            "{what} id must be 1 to {MAX_ID_LEN} bytes, got {}",
            value.len()
        )));
    }
    Ok(value)
}

/// A strict decimal integer.
pub fn integer(what: &str, value: &[u8]) -> Parsed<i64> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            ArgError::new(format_args!(
                "{what} must be an integer, got '{}'",
                shown(value)
            ))
        })
}

/// A device TTL in milliseconds.
pub fn ttl(value: &[u8]) -> Parsed<Millis> {
    let range = || {
        ArgError::new(format_args!(
            "TTL must be an integer from {MIN_TTL} to {MAX_TTL} milliseconds, got '{}'",
            shown(value)
        ))
    };
    let ms = integer("TTL", value).map_err(|_| range())?;
    if !(MIN_TTL..=MAX_TTL).contains(&ms) {
        return Err(range());
    }
    Ok(ms)
}

/// Device metadata: a JSON object of at most [`MAX_META_LEN`] bytes, kept as given.
pub fn meta(value: &[u8]) -> Parsed<String> {
    if value.len() > MAX_META_LEN {
        return Err(ArgError::new(format_args!(
            "META must be at most {MAX_META_LEN} bytes, got {}",
            value.len()
        )));
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| ArgError::new("META must be a JSON object (UTF-8 text)"))?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_owned()),
        Ok(_) => Err(ArgError::new(
            "META must be a JSON object, not another JSON value",
        )),
        Err(e) => Err(ArgError::new(format_args!("META is not valid JSON: {e}"))),
    }
}

/// Named options after the positional arguments, each given at most once: `NAME value`.
/// `allowed` lists the names in upper case; matching ignores case as Redis does.
pub fn options<'a>(
    args: &[&'a [u8]],
    allowed: &[&'static str],
) -> Parsed<Vec<(&'static str, &'a [u8])>> {
    let mut found: Vec<(&'static str, &'a [u8])> = Vec::new();
    let mut rest = args;
    while let [name, tail @ ..] = rest {
        let Some(&option) = allowed
            .iter()
            .find(|o| o.as_bytes().eq_ignore_ascii_case(name))
        else {
            return Err(ArgError::new(format_args!(
                "unknown option '{}' (expected {})",
                shown(name),
                allowed.join(" or ")
            )));
        };
        let [value, tail @ ..] = tail else {
            return Err(ArgError::new(format_args!("{option} needs a value")));
        };
        if found.iter().any(|(o, _)| *o == option) {
            return Err(ArgError::new(format_args!("{option} given more than once")));
        }
        found.push((option, *value));
        rest = tail;
    }
    Ok(found)
}

/// Most scopes a user may be in, and the longest scope name, in bytes.
pub const MAX_SCOPES: usize = 16;
pub const MAX_SCOPE_LEN: usize = 128;

/// A scope name.
pub fn scope(value: &[u8]) -> Parsed<&[u8]> {
    if value.is_empty() || value.len() > MAX_SCOPE_LEN {
        return Err(ArgError::new(format_args!(
            "scope must be 1 to {MAX_SCOPE_LEN} bytes, got {}",
            value.len()
        )));
    }
    Ok(value)
}

/// `user device [TTL ms] [META json] [SCOPE s [s ...]]` of PRESENCE.ONLINE.
#[derive(Debug, PartialEq, Eq)]
pub struct Online<'a> {
    pub user: &'a [u8],
    pub device: &'a [u8],
    pub ttl: Option<Millis>,
    pub meta: Option<String>,
    /// `None`: the user keeps the scopes they have.
    pub scopes: Option<Vec<Vec<u8>>>,
}

pub fn online<'a>(args: &[&'a [u8]]) -> Parsed<Online<'a>> {
    let (user, device, mut rest) = user_and_device(args)?;
    let mut parsed = Online {
        user,
        device,
        ttl: None,
        meta: None,
        scopes: None,
    };
    // SCOPE takes every argument after it, so it comes last.
    if let Some(at) = (0..rest.len())
        .step_by(2)
        .find(|&i| rest[i].eq_ignore_ascii_case(b"SCOPE"))
    {
        let names = &rest[at + 1..];
        if names.is_empty() {
            return Err(ArgError::new("SCOPE needs at least one scope"));
        }
        if names.len() > MAX_SCOPES {
            return Err(ArgError::new(format_args!(
                "a user may be in at most {MAX_SCOPES} scopes, got {}",
                names.len()
            )));
        }
        let scopes = names
            .iter()
            .map(|name| scope(name).map(<[u8]>::to_vec))
            .collect::<Parsed<Vec<_>>>()?;
        parsed.scopes = Some(scopes);
        rest = &rest[..at];
    }
    // SCOPE is named only for the error message: it was taken out above.
    for (option, value) in options(rest, &["TTL", "META", "SCOPE"])? {
        match option {
            "TTL" => parsed.ttl = Some(ttl(value)?),
            "META" => parsed.meta = Some(meta(value)?),
            _ => {}
        }
    }
    Ok(parsed)
}

/// `user device [TTL ms] [ACTIVE]` of PRESENCE.HEARTBEAT.
#[derive(Debug, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    pub user: &'a [u8],
    pub device: &'a [u8],
    pub ttl: Option<Millis>,
    pub active: bool,
}

pub fn heartbeat<'a>(args: &[&'a [u8]]) -> Parsed<Heartbeat<'a>> {
    let (user, device, mut rest) = user_and_device(args)?;
    let mut active = false;
    // ACTIVE is a flag: take it out wherever it stands among the options.
    let mut kept: Vec<&'a [u8]> = Vec::with_capacity(rest.len());
    while let [arg, tail @ ..] = rest {
        if arg.eq_ignore_ascii_case(b"ACTIVE") && kept.len().is_multiple_of(2) {
            if active {
                return Err(ArgError::new("ACTIVE given more than once"));
            }
            active = true;
        } else {
            kept.push(arg);
        }
        rest = tail;
    }
    let mut parsed = Heartbeat {
        user,
        device,
        ttl: None,
        active,
    };
    for (_, value) in options(&kept, &["TTL"])? {
        parsed.ttl = Some(ttl(value)?);
    }
    Ok(parsed)
}

/// `[SCOPE s] [LIMIT n] [CURSOR c]` of PRESENCE.LIST.
#[derive(Debug, PartialEq, Eq)]
pub struct List<'a> {
    pub scope: Option<&'a [u8]>,
    pub limit: usize,
    /// `None`: from the top (cursor `0`).
    pub after: Option<Position>,
}

pub fn list<'a>(args: &[&'a [u8]]) -> Parsed<List<'a>> {
    let mut parsed = List {
        scope: None,
        limit: listing::DEFAULT_LIMIT,
        after: None,
    };
    for (option, value) in options(args, &["SCOPE", "LIMIT", "CURSOR"])? {
        match option {
            "SCOPE" => parsed.scope = Some(scope(value)?),
            "LIMIT" => {
                let max = listing::MAX_LIMIT;
                let range = || {
                    ArgError::new(format_args!(
                        "LIMIT must be an integer from 1 to {max}, got '{}'",
                        shown(value)
                    ))
                };
                let n = integer("LIMIT", value).map_err(|_| range())?;
                parsed.limit = usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(range)?;
            }
            _ => {
                if value != b"0" {
                    parsed.after = Some(Position::parse_cursor(value).ok_or_else(|| {
                        ArgError::new(format_args!(
                            "invalid cursor '{}' (use 0 to start, then the cursor a reply gave)",
                            shown(value)
                        ))
                    })?);
                }
            }
        }
    }
    Ok(parsed)
}

/// `[SCOPE s]` of PRESENCE.COUNT.
pub fn count<'a>(args: &[&'a [u8]]) -> Parsed<Option<&'a [u8]>> {
    match options(args, &["SCOPE"])?.first() {
        Some((_, value)) => Ok(Some(scope(value)?)),
        None => Ok(None),
    }
}

/// Longest custom status message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 256;
/// Longest duration of a manual status (FOR), and of `away-after`: 30 days.
pub const MAX_FOR: Millis = 30 * 24 * 3600 * 1000;

/// `user (online|away|busy|dnd|invisible|auto) [MESSAGE text] [FOR ms]` of PRESENCE.STATUS.
#[derive(Debug, PartialEq, Eq)]
pub struct SetStatus<'a> {
    pub user: &'a [u8],
    /// `None` for `auto`.
    pub status: Option<Status>,
    pub message: Option<String>,
    pub duration: Option<Millis>,
}

pub fn set_status<'a>(args: &[&'a [u8]]) -> Parsed<SetStatus<'a>> {
    let [user, status, rest @ ..] = args else {
        return Err(ArgError::new("user and status are required"));
    };
    let user = id("user", user)?;
    let status = if status.eq_ignore_ascii_case(b"auto") {
        None
    } else {
        match Status::parse(status) {
            Some(Status::Offline) => {
                return Err(ArgError::new(
                    "offline cannot be set: a user is offline when no device is connected",
                ))
            }
            Some(status) => Some(status),
            None => {
                return Err(ArgError::new(format_args!(
                    "unknown status '{}' (expected online, away, busy, dnd, invisible or auto)",
                    shown(status)
                )))
            }
        }
    };
    let mut parsed = SetStatus {
        user,
        status,
        message: None,
        duration: None,
    };
    for (option, value) in options(rest, &["MESSAGE", "FOR"])? {
        if parsed.status.is_none() {
            return Err(ArgError::new(format_args!(
                "{option} cannot be given with auto"
            )));
        }
        match option {
            "MESSAGE" => {
                if value.len() > MAX_MESSAGE_LEN {
                    return Err(ArgError::new(format_args!(
                        "MESSAGE must be at most {MAX_MESSAGE_LEN} bytes, got {}",
                        value.len()
                    )));
                }
                let text = std::str::from_utf8(value)
                    .map_err(|_| ArgError::new("MESSAGE must be UTF-8 text"))?;
                parsed.message = Some(text.to_owned());
            }
            _ => {
                let range = || {
                    ArgError::new(format_args!(
                        "FOR must be an integer from 1 to {MAX_FOR} milliseconds, got '{}'",
                        shown(value)
                    ))
                };
                let ms = integer("FOR", value).map_err(|_| range())?;
                if !(1..=MAX_FOR).contains(&ms) {
                    return Err(range());
                }
                parsed.duration = Some(ms);
            }
        }
    }
    Ok(parsed)
}

/// A user id, a device id and the arguments after them.
pub type UserDevice<'a, 'b> = (&'a [u8], &'a [u8], &'b [&'a [u8]]);

/// `user device` and whatever follows. Arity is checked by the caller.
pub fn user_and_device<'a, 'b>(args: &'b [&'a [u8]]) -> Parsed<UserDevice<'a, 'b>> {
    match args {
        [user, device, rest @ ..] => Ok((id("user", user)?, id("device", device)?, rest)),
        _ => Err(ArgError::new("user and device are required")),
    }
}

/// A viewer, if any, and the arguments after it.
pub type Viewer<'a, 'b> = (Option<&'a [u8]>, &'b [&'a [u8]]);

/// `[VIEWER v]` before the rest of the arguments: the viewer, if any, and the arguments after it.
pub fn viewer<'a, 'b>(args: &'b [&'a [u8]]) -> Parsed<Viewer<'a, 'b>> {
    match args {
        [option, viewer, rest @ ..] if option.eq_ignore_ascii_case(b"VIEWER") => {
            Ok((Some(id("viewer", viewer)?), rest))
        }
        [option] if option.eq_ignore_ascii_case(b"VIEWER") => {
            Err(ArgError::new("VIEWER needs a value"))
        }
        _ => Ok((None, args)),
    }
}

/// The rules given to PRESENCE.PRIVACY: `[ONLINE rule] [LASTSEEN rule]`.
pub fn privacy_rules(args: &[&[u8]]) -> Parsed<(Option<Audience>, Option<Audience>)> {
    let mut rules = (None, None);
    for (option, value) in options(args, &["ONLINE", "LASTSEEN"])? {
        let audience = Audience::parse(value).ok_or_else(|| {
            ArgError::new(format_args!(
                "{option} must be everyone, contacts or nobody, got '{}'",
                shown(value)
            ))
        })?;
        match option {
            "ONLINE" => rules.0 = Some(audience),
            _ => rules.1 = Some(audience),
        }
    }
    Ok(rules)
}

/// The users of PRESENCE.BULK: at least one, at most `max_bulk`.
pub fn bulk_users<'a>(args: &[&'a [u8]], max_bulk: usize) -> Parsed<Vec<&'a [u8]>> {
    if args.len() > max_bulk {
        return Err(ArgError::new(format_args!(
            "too many users: {} given, max-bulk is {max_bulk}",
            args.len()
        )));
    }
    args.iter().map(|u| id("user", u)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: std::fmt::Debug>(r: Parsed<T>) -> String {
        r.unwrap_err().0
    }

    #[test]
    fn ids_are_binary_safe_within_bounds() {
        assert_eq!(id("user", b"a b{c}\0\xff"), Ok(&b"a b{c}\0\xff"[..]));
        assert_eq!(id("user", &[b'x'; 512]).map(<[u8]>::len), Ok(512));
        assert_eq!(
            err(id("user", b"")),
            "ERR user id must be 1 to 512 bytes, got 0"
        );
        assert_eq!(
            err(id("device", &[b'x'; 513])),
            "ERR device id must be 1 to 512 bytes, got 513"
        );
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(ttl(b"100"), Ok(100));
        assert_eq!(ttl(b"604800000"), Ok(604_800_000));
        for bad in [
            &b"99"[..],
            b"604800001",
            b"-5",
            b"abc",
            b"",
            b"1.5",
            b"+100",
            b" 100",
        ] {
            assert!(
                err(ttl(bad)).starts_with("ERR TTL must be an integer from 100"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn meta_must_be_a_small_json_object() {
        assert_eq!(meta(br#"{"os":"ios"}"#), Ok(r#"{"os":"ios"}"#.to_string()));
        assert!(err(meta(b"[1,2]")).contains("JSON object"));
        assert!(err(meta(b"42")).contains("JSON object"));
        assert!(err(meta(b"{bad")).contains("not valid JSON"));
        assert!(err(meta(b"\xff")).contains("UTF-8"));
        let big = format!("{{\"k\":\"{}\"}}", "x".repeat(MAX_META_LEN));
        assert!(err(meta(big.as_bytes())).contains("at most 4096 bytes"));
    }

    #[test]
    fn online_options_in_any_order_and_case() {
        let args: Vec<&[u8]> = vec![b"u", b"d", b"meta", b"{}", b"ttl", b"500"];
        let parsed = online(&args).unwrap();
        assert_eq!(parsed.ttl, Some(500));
        assert_eq!(parsed.meta.as_deref(), Some("{}"));
        let plain = online(&[b"u", b"d"]).unwrap();
        assert_eq!((plain.ttl, plain.meta), (None, None));
    }

    #[test]
    fn online_takes_scopes_last() {
        let parsed = online(&[b"u", b"d", b"TTL", b"500", b"scope", b"z1", b"TTL"]).unwrap();
        assert_eq!(parsed.ttl, Some(500));
        assert_eq!(parsed.scopes, Some(vec![b"z1".to_vec(), b"TTL".to_vec()]));
        assert_eq!(online(&[b"u", b"d"]).unwrap().scopes, None);
        assert_eq!(
            err(online(&[b"u", b"d", b"SCOPE"])),
            "ERR SCOPE needs at least one scope"
        );
        assert_eq!(
            err(online(&[b"u", b"d", b"SCOPE", b""])),
            "ERR scope must be 1 to 128 bytes, got 0"
        );
        let mut many: Vec<&[u8]> = vec![b"u", b"d", b"SCOPE"];
        many.extend([&b"s"[..]; 17]);
        assert_eq!(
            err(online(&many)),
            "ERR a user may be in at most 16 scopes, got 17"
        );
        // A META value that reads SCOPE is a value, not the option.
        assert!(err(online(&[b"u", b"d", b"META", b"SCOPE"])).contains("META"));
    }

    #[test]
    fn list_and_count_options() {
        let l = list(&[]).unwrap();
        assert_eq!((l.scope, l.limit, l.after), (None, 100, None));
        let at = Position {
            last_active: 5,
            user: b"a".to_vec(),
        };
        let cursor = at.cursor();
        let l = list(&[
            b"limit",
            b"1000",
            b"SCOPE",
            b"z",
            b"CURSOR",
            cursor.as_bytes(),
        ])
        .unwrap();
        assert_eq!(
            (l.scope, l.limit, l.after),
            (Some(&b"z"[..]), 1000, Some(at))
        );
        assert_eq!(list(&[b"CURSOR", b"0"]).unwrap().after, None);
        for bad in [&b"0"[..], b"1001", b"-1", b"x"] {
            assert!(err(list(&[b"LIMIT", bad]))
                .starts_with("ERR LIMIT must be an integer from 1 to 1000"));
        }
        assert!(err(list(&[b"CURSOR", b"7"])).starts_with("ERR invalid cursor '7'"));
        assert_eq!(count(&[]).unwrap(), None);
        assert_eq!(count(&[b"scope", b"z"]).unwrap(), Some(&b"z"[..]));
        assert_eq!(
            err(count(&[b"LIMIT", b"1"])),
            "ERR unknown option 'LIMIT' (expected SCOPE)"
        );
    }

    #[test]
    fn bad_options_are_named() {
        assert_eq!(
            err(online(&[b"u", b"d", b"FOO", b"1"])),
            "ERR unknown option 'FOO' (expected TTL or META or SCOPE)"
        );
        assert_eq!(err(online(&[b"u", b"d", b"TTL"])), "ERR TTL needs a value");
        assert_eq!(
            err(online(&[b"u", b"d", b"TTL", b"500", b"TTL", b"600"])),
            "ERR TTL given more than once"
        );
        assert_eq!(
            err(heartbeat(&[b"u", b"d", b"META", b"{}"])),
            "ERR unknown option 'META' (expected TTL)"
        );
    }

    #[test]
    fn errors_show_client_bytes_as_printable_ascii() {
        let e = err(online(&[b"u", b"d", b"X\r\nY\xff\xc3\xa9", b"1"]));
        assert!(e.is_ascii(), "{e}");
        assert!(e.contains("'X\\x0d\\x0aY\\xff\\xc3\\xa9'"), "{e}");
        let long = err(online(&[b"u", b"d", &[b'o'; 100], b"1"]));
        assert!(long.contains(&format!("'{}...'", "o".repeat(64))), "{long}");
    }

    #[test]
    fn heartbeat_takes_active_anywhere_among_its_options() {
        assert!(heartbeat(&[b"u", b"d", b"active"]).unwrap().active);
        let h = heartbeat(&[b"u", b"d", b"TTL", b"500", b"ACTIVE"]).unwrap();
        assert_eq!((h.ttl, h.active), (Some(500), true));
        let h = heartbeat(&[b"u", b"d", b"ACTIVE", b"TTL", b"500"]).unwrap();
        assert_eq!((h.ttl, h.active), (Some(500), true));
        assert!(!heartbeat(&[b"u", b"d"]).unwrap().active);
        assert_eq!(
            err(heartbeat(&[b"u", b"d", b"ACTIVE", b"ACTIVE"])),
            "ERR ACTIVE given more than once"
        );
    }

    #[test]
    fn status_arguments() {
        let s = set_status(&[b"u", b"DND", b"MESSAGE", b"In a meeting", b"FOR", b"60000"]).unwrap();
        assert_eq!(s.status, Some(Status::Dnd));
        assert_eq!(s.message.as_deref(), Some("In a meeting"));
        assert_eq!(s.duration, Some(60000));
        assert_eq!(set_status(&[b"u", b"auto"]).unwrap().status, None);
        assert!(err(set_status(&[b"u", b"offline"])).contains("offline cannot be set"));
        assert!(err(set_status(&[b"u", b"sleeping"])).contains("unknown status 'sleeping'"));
        assert!(err(set_status(&[b"u", b"away", b"MESSAGE", &[b'm'; 257]]))
            .contains("at most 256 bytes"));
        assert!(err(set_status(&[b"u", b"away", b"FOR", b"0"]))
            .contains("FOR must be an integer from 1"));
        assert!(err(set_status(&[b"u", b"away", b"FOR", b"2592000001"])).contains("FOR must be"));
        assert!(
            err(set_status(&[b"u", b"auto", b"FOR", b"10"])).contains("cannot be given with auto")
        );
    }

    #[test]
    fn viewer_and_privacy_arguments() {
        let args: Vec<&[u8]> = vec![b"viewer", b"bob", b"a", b"c"];
        let (viewer, rest) = viewer(&args).unwrap();
        assert_eq!((viewer, rest.len()), (Some(&b"bob"[..]), 2));
        let plain: Vec<&[u8]> = vec![b"a", b"b"];
        assert_eq!(super::viewer(&plain).unwrap(), (None, &plain[..]));
        assert_eq!(err(super::viewer(&[b"VIEWER"])), "ERR VIEWER needs a value");
        assert_eq!(
            privacy_rules(&[b"online", b"Contacts"]).unwrap(),
            (Some(Audience::Contacts), None)
        );
        assert!(
            err(privacy_rules(&[b"LASTSEEN", b"friends"])).contains("LASTSEEN must be everyone")
        );
    }

    #[test]
    fn bulk_limits() {
        assert_eq!(bulk_users(&[b"a", b"b"], 2).unwrap().len(), 2);
        assert_eq!(
            err(bulk_users(&[b"a", b"b", b"c"], 2)),
            "ERR too many users: 3 given, max-bulk is 2"
        );
        assert!(err(bulk_users(&[b"a", b""], 5)).contains("user id"));
    }
}
