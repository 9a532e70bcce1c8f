//! Parsing of command arguments, for every command: arguments are byte slices, errors are
//! [`Error`]s. Pure, so every rule is unit-tested without a server.
//!
//! Every check happens here, before a command touches a key, so a refused command changes nothing.

pub use crate::error::shown;
use crate::error::Error;
pub use crate::limits::*;
use crate::listing::{self, Position};
use crate::model::{Audience, Span, Status};

pub type Parsed<T> = Result<T, Error>;

/// Checks the length of a user or device id; `what` names it in the error.
pub fn id<'a>(what: &'static str, value: &'a [u8]) -> Parsed<&'a [u8]> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(Error::IdLength {
            what,
            len: value.len(),
        });
    }
    Ok(value)
}

/// A strict decimal integer (no sign but `-`, no spaces).
pub fn integer(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<i64>().ok())
}

/// An integer from `min` to `max`; the error names `what` and the range, with `unit` after it.
pub fn integer_in(
    what: &'static str,
    value: &[u8],
    (min, max): (i64, i64),
    unit: &'static str,
) -> Parsed<i64> {
    integer(value)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| Error::OutOfRange {
            what,
            min,
            max,
            unit,
            given: shown(value),
        })
}

/// A device TTL in milliseconds.
pub fn ttl(value: &[u8]) -> Parsed<Span> {
    integer_in("TTL", value, (MIN_TTL, MAX_TTL), "milliseconds").map(Span)
}

/// Device metadata: a JSON object of at most [`MAX_META_LEN`] bytes, kept as given.
pub fn meta(value: &[u8]) -> Parsed<String> {
    json_object("META", value, MAX_META_LEN)
}

/// A device's member data in a room: a JSON object of at most [`MAX_DATA_LEN`] bytes.
pub fn room_data(value: &[u8]) -> Parsed<String> {
    json_object("DATA", value, MAX_DATA_LEN)
}

/// The text of a JSON object of at most `max` bytes, kept as given.
fn json_object(what: &'static str, value: &[u8], max: usize) -> Parsed<String> {
    if value.len() > max {
        return Err(Error::JsonTooLarge {
            what,
            max,
            len: value.len(),
        });
    }
    let text = std::str::from_utf8(value).map_err(|_| Error::JsonNotText(what))?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_owned()),
        Ok(_) => Err(Error::JsonNotObject(what)),
        Err(e) => Err(Error::JsonInvalid(what, e.to_string())),
    }
}

/// A room id: as a scope, 1 to [`MAX_SCOPE_LEN`] bytes (a scope is a room).
pub fn room(value: &[u8]) -> Parsed<&[u8]> {
    if value.is_empty() || value.len() > MAX_SCOPE_LEN {
        return Err(Error::RoomLength(value.len()));
    }
    Ok(value)
}

/// `user device room [DATA json]` of PRESENCE.JOIN.
#[derive(Debug, PartialEq, Eq)]
pub struct Join<'a> {
    pub user: &'a [u8],
    pub device: &'a [u8],
    pub room: &'a [u8],
    pub data: Option<String>,
}

pub fn join<'a>(args: &[&'a [u8]]) -> Parsed<Join<'a>> {
    let [user, device, room, rest @ ..] = args else {
        return Err(Error::WrongArity);
    };
    let mut data = None;
    for (name, value) in options(rest, &["DATA"])? {
        if name == "DATA" {
            data = Some(room_data(value)?);
        }
    }
    Ok(Join {
        user: id("user", user)?,
        device: id("device", device)?,
        room: self::room(room)?,
        data,
    })
}

/// `user device room` (the room `None` only for NONE).
pub type DeviceRoom<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

/// `user device room` of PRESENCE.LEAVE, and `user device (room|NONE)` of PRESENCE.TYPING
/// (`None` for NONE, when `none_allowed`).
pub fn device_room<'a>(args: &[&'a [u8]], none_allowed: bool) -> Parsed<DeviceRoom<'a>> {
    let [user, device, room] = args else {
        return Err(Error::WrongArity);
    };
    let room = if none_allowed && room.eq_ignore_ascii_case(b"NONE") {
        None
    } else {
        Some(self::room(room)?)
    };
    Ok((id("user", user)?, id("device", device)?, room))
}

/// `user [device]` of PRESENCE.ROOMS.
pub fn rooms<'a>(args: &[&'a [u8]]) -> Parsed<(&'a [u8], Option<&'a [u8]>)> {
    match args {
        [user] => Ok((id("user", user)?, None)),
        [user, device] => Ok((id("user", user)?, Some(id("device", device)?))),
        _ => Err(Error::WrongArity),
    }
}

/// `room` of PRESENCE.TYPERS.
pub fn typers<'a>(args: &[&'a [u8]]) -> Parsed<&'a [u8]> {
    match args {
        [room] => self::room(room),
        _ => Err(Error::WrongArity),
    }
}

/// Named options after the positional arguments, each given at most once: `NAME value`.
/// `allowed` lists the names in upper case; matching ignores case as Redis does.
pub fn options<'a>(
    args: &[&'a [u8]],
    allowed: &'static [&'static str],
) -> Parsed<Vec<(&'static str, &'a [u8])>> {
    let mut found: Vec<(&'static str, &'a [u8])> = Vec::new();
    let mut rest = args;
    while let [name, tail @ ..] = rest {
        let Some(&option) = allowed
            .iter()
            .find(|o| o.as_bytes().eq_ignore_ascii_case(name))
        else {
            return Err(Error::UnknownOption {
                given: shown(name),
                expected: allowed,
            });
        };
        let [value, tail @ ..] = tail else {
            return Err(Error::NeedsValue(option));
        };
        if found.iter().any(|(o, _)| *o == option) {
            return Err(Error::GivenTwice(option));
        }
        found.push((option, *value));
        rest = tail;
    }
    Ok(found)
}

/// Takes the flags `flags` (words with no value: `ACTIVE`, `WITHSCOPES`) out of name-value
/// options, wherever they stand among them: whether each was there, and the options left.
fn take_flags<'a, const N: usize>(
    args: &[&'a [u8]],
    flags: [&'static str; N],
) -> Parsed<([bool; N], Vec<&'a [u8]>)> {
    let mut found = [false; N];
    let mut kept: Vec<&'a [u8]> = Vec::with_capacity(args.len());
    for arg in args {
        // At an even position of what is kept, a word is an option's name, not its value.
        let flag = flags
            .iter()
            .position(|flag| arg.eq_ignore_ascii_case(flag.as_bytes()))
            .filter(|_| kept.len().is_multiple_of(2));
        match flag.and_then(|i| Some((i, found.get_mut(i)?))) {
            Some((i, seen)) => {
                if *seen {
                    return Err(Error::GivenTwice(flags.get(i).copied().unwrap_or_default()));
                }
                *seen = true;
            }
            None => kept.push(arg),
        }
    }
    Ok((found, kept))
}

/// A scope name.
pub fn scope(value: &[u8]) -> Parsed<&[u8]> {
    if value.is_empty() || value.len() > MAX_SCOPE_LEN {
        return Err(Error::ScopeLength(value.len()));
    }
    Ok(value)
}

/// `user device [TTL ms] [META json] [SCOPE s [s ...]]` of PRESENCE.ONLINE.
#[derive(Debug, PartialEq, Eq)]
pub struct Online<'a> {
    pub user: &'a [u8],
    pub device: &'a [u8],
    pub ttl: Option<Span>,
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
        let names = rest.get(at + 1..).unwrap_or_default();
        if names.is_empty() {
            return Err(Error::NoScope);
        }
        if names.len() > MAX_SCOPES {
            return Err(Error::TooManyScopes(names.len()));
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
    pub ttl: Option<Span>,
    pub active: bool,
    pub meta: Option<String>,
}

pub fn heartbeat<'a>(args: &[&'a [u8]]) -> Parsed<Heartbeat<'a>> {
    let (user, device, rest) = user_and_device(args)?;
    let ([active], kept) = take_flags(rest, ["ACTIVE"])?;
    let mut parsed = Heartbeat {
        user,
        device,
        ttl: None,
        active,
        meta: None,
    };
    for (option, value) in options(&kept, &["TTL", "META"])? {
        match option {
            "TTL" => parsed.ttl = Some(ttl(value)?),
            _ => parsed.meta = Some(meta(value)?),
        }
    }
    Ok(parsed)
}

/// `user device` of PRESENCE.OFFLINE.
pub fn offline<'a>(args: &[&'a [u8]]) -> Parsed<(&'a [u8], &'a [u8])> {
    match user_and_device(args)? {
        (user, device, []) => Ok((user, device)),
        _ => Err(Error::WrongArity),
    }
}

/// `[SCOPE s] [LIMIT n] [CURSOR c]` of PRESENCE.LIST.
#[derive(Debug, PartialEq, Eq)]
pub struct List<'a> {
    pub scope: Option<&'a [u8]>,
    pub limit: usize,
    /// `None`: from the top (cursor `0`).
    pub after: Option<Position>,
    /// Rows carry the user's scopes.
    pub with_scopes: bool,
    /// Rows carry the user's devices (in the room, for a room's listing) with their member data.
    pub with_devices: bool,
}

pub fn list<'a>(args: &[&'a [u8]]) -> Parsed<List<'a>> {
    let ([with_scopes, with_devices], args) = take_flags(args, ["WITHSCOPES", "WITHDEVICES"])?;
    let mut parsed = List {
        scope: None,
        limit: listing::DEFAULT_LIMIT,
        after: None,
        with_scopes,
        with_devices,
    };
    for (option, value) in options(&args, &["SCOPE", "LIMIT", "CURSOR"])? {
        match option {
            "SCOPE" => parsed.scope = Some(scope(value)?),
            "LIMIT" => {
                let range = (1, listing::MAX_LIMIT as i64);
                parsed.limit = integer_in("LIMIT", value, range, "")? as usize;
            }
            _ => {
                if value != b"0" {
                    let cursor = Position::parse_cursor(value);
                    parsed.after = Some(cursor.ok_or_else(|| Error::InvalidCursor(shown(value)))?);
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

/// `[LIMIT n]` of PRESENCE.SWEEP: the most devices it may remove (`default` when not given).
pub fn sweep(args: &[&[u8]], default: usize) -> Parsed<usize> {
    match options(args, &["LIMIT"])?.first() {
        Some((_, value)) => Ok(integer_in("LIMIT", value, (1, MAX_SWEEP_LIMIT), "")? as usize),
        None => Ok(default),
    }
}

/// `user (online|away|busy|dnd|invisible|auto) [MESSAGE text] [FOR ms]` of PRESENCE.STATUS.
#[derive(Debug, PartialEq, Eq)]
pub struct SetStatus<'a> {
    pub user: &'a [u8],
    /// `None` for `auto`.
    pub status: Option<Status>,
    pub message: Option<String>,
    pub duration: Option<Span>,
}

pub fn set_status<'a>(args: &[&'a [u8]]) -> Parsed<SetStatus<'a>> {
    let [user, status, rest @ ..] = args else {
        return Err(Error::Required("user and status"));
    };
    let user = id("user", user)?;
    let status = if status.eq_ignore_ascii_case(b"auto") {
        None
    } else {
        match Status::parse(status) {
            Some(Status::Offline) => return Err(Error::OfflineNotSettable),
            Some(status) => Some(status),
            None => return Err(Error::UnknownStatus(shown(status))),
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
            return Err(Error::WithAuto(option));
        }
        match option {
            "MESSAGE" => {
                if value.len() > MAX_MESSAGE_LEN {
                    return Err(Error::MessageTooLong(value.len()));
                }
                let text = std::str::from_utf8(value).map_err(|_| Error::MessageNotText)?;
                parsed.message = Some(text.to_owned());
            }
            _ => {
                let ms = integer_in("FOR", value, (1, MAX_FOR), "milliseconds")?;
                parsed.duration = Some(Span(ms));
            }
        }
    }
    Ok(parsed)
}

/// `user [device]` of PRESENCE.ACTIVITY.
pub fn activity<'a>(args: &[&'a [u8]]) -> Parsed<(&'a [u8], Option<&'a [u8]>)> {
    match args {
        [user] => Ok((id("user", user)?, None)),
        [user, device] => Ok((id("user", user)?, Some(id("device", device)?))),
        _ => Err(Error::WrongArity),
    }
}

/// `user device (context|NONE)` of PRESENCE.CONTEXT (`None` for NONE).
pub type Context<'a> = (&'a [u8], &'a [u8], Option<Vec<u8>>);

pub fn context<'a>(args: &[&'a [u8]]) -> Parsed<Context<'a>> {
    let [user, device, context] = args else {
        return Err(Error::WrongArity);
    };
    let context = if context.eq_ignore_ascii_case(b"NONE") {
        None
    } else {
        Some(id("context", context)?.to_vec())
    };
    Ok((id("user", user)?, id("device", device)?, context))
}

/// `user context` of PRESENCE.INCONTEXT.
pub fn in_context<'a>(args: &[&'a [u8]]) -> Parsed<(&'a [u8], &'a [u8])> {
    match args {
        [user, context] => Ok((id("user", user)?, id("context", context)?)),
        _ => Err(Error::WrongArity),
    }
}

/// `user` alone, of PRESENCE.DEVICES.
pub fn user_only<'a>(args: &[&'a [u8]]) -> Parsed<&'a [u8]> {
    match args {
        [user] => id("user", user),
        _ => Err(Error::WrongArity),
    }
}

/// Whom PRESENCE.FANOUT answers for.
#[derive(Debug, PartialEq, Eq)]
pub enum Viewers<'a> {
    /// The user's contacts.
    Contacts,
    /// These viewers, in order.
    Listed(Vec<&'a [u8]>),
}

/// PRESENCE.FANOUT's arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Fanout<'a> {
    pub user: &'a [u8],
    /// An event payload of the user's, to answer for instead of the present.
    pub event: Option<&'a [u8]>,
    pub viewers: Viewers<'a>,
}

/// `user [EVENT payload] (CONTACTS | VIEWERS viewer [viewer ...])` of PRESENCE.FANOUT: at most
/// `max_viewers` viewers listed.
pub fn fanout<'a>(args: &[&'a [u8]], max_viewers: usize) -> Parsed<Fanout<'a>> {
    let [user, rest @ ..] = args else {
        return Err(Error::WrongArity);
    };
    let user = id("user", user)?;
    let (event, rest) = match rest {
        [word, payload, rest @ ..] if word.eq_ignore_ascii_case(b"EVENT") => (Some(*payload), rest),
        _ => (None, rest),
    };
    let viewers = match rest {
        [word] if word.eq_ignore_ascii_case(b"CONTACTS") => Viewers::Contacts,
        [word, listed @ ..] if word.eq_ignore_ascii_case(b"VIEWERS") && !listed.is_empty() => {
            if listed.len() > max_viewers {
                return Err(Error::TooManyUsers {
                    given: listed.len(),
                    max: max_viewers,
                });
            }
            Viewers::Listed(
                listed
                    .iter()
                    .map(|v| id("viewer", v))
                    .collect::<Parsed<_>>()?,
            )
        }
        [word, ..]
            if !word.eq_ignore_ascii_case(b"VIEWERS")
                && !word.eq_ignore_ascii_case(b"CONTACTS") =>
        {
            return Err(Error::UnknownOption {
                given: shown(word),
                expected: &["EVENT", "CONTACTS", "VIEWERS"],
            })
        }
        _ => return Err(Error::WrongArity),
    };
    Ok(Fanout {
        user,
        event,
        viewers,
    })
}

/// `user [VIEWER v]` of PRESENCE.GET.
pub fn get<'a>(args: &[&'a [u8]]) -> Parsed<(&'a [u8], Option<&'a [u8]>)> {
    let [user, rest @ ..] = args else {
        return Err(Error::WrongArity);
    };
    let user = id("user", user)?;
    let (viewer, extra) = viewer(rest)?;
    if let Some(option) = extra.first() {
        return Err(Error::UnknownOption {
            given: shown(option),
            expected: &["VIEWER"],
        });
    }
    Ok((user, viewer))
}

/// PRESENCE.BULK's arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Bulk<'a> {
    pub viewer: Option<&'a [u8]>,
    pub users: Vec<&'a [u8]>,
    /// Rows carry the device that left last.
    pub with_device: bool,
}

/// Where PRESENCE.BULK's parts are (see [`bulk_parts`]).
#[derive(Debug, PartialEq, Eq)]
pub struct BulkParts<'a> {
    /// The VIEWER clause's value (`Some(None)`: the word alone).
    pub viewer: Option<Option<&'a [u8]>>,
    /// The positions of the users.
    pub users: std::ops::Range<usize>,
    pub with_device: bool,
}

/// `user [user ...] [VIEWER v]` (or `VIEWER v user [user ...]`) of PRESENCE.BULK: at most
/// `max_bulk` users.
pub fn bulk<'a>(args: &[&'a [u8]], max_bulk: usize) -> Parsed<Bulk<'a>> {
    let parts = bulk_parts(args);
    let viewer = match parts.viewer {
        Some(Some(viewer)) => Some(id("viewer", viewer)?),
        Some(None) => return Err(Error::NeedsValue("VIEWER")),
        None => None,
    };
    let users = args.get(parts.users).unwrap_or_default();
    if users.is_empty() {
        return Err(Error::WrongArity);
    }
    Ok(Bulk {
        viewer,
        users: bulk_users(users, max_bulk)?,
        with_device: parts.with_device,
    })
}

/// Where PRESENCE.BULK's parts are. After the users come `VIEWER v` (as for GET) and the flag
/// `WITHDEVICE`, in either order; `VIEWER v` may also come first (the older form). The server's
/// key-position request is answered from this too, so the keys it routes by are exactly the
/// users read.
pub fn bulk_parts<'a>(args: &[&'a [u8]]) -> BulkParts<'a> {
    let is = |a: &[u8], word: &str| a.eq_ignore_ascii_case(word.as_bytes());
    let mut parts = BulkParts {
        viewer: None,
        users: 0..args.len(),
        with_device: false,
    };
    match args {
        [first, value, ..] if is(first, "VIEWER") => {
            parts.viewer = Some(Some(value));
            parts.users.start = 2;
        }
        [first] if is(first, "VIEWER") => {
            parts.viewer = Some(None);
            parts.users.start = 1;
        }
        _ => {}
    }
    // The trailing clauses, each at most once, with at least one user before them.
    for _ in 0..2 {
        let users = args.get(parts.users.clone()).unwrap_or_default();
        match users {
            [_, .., last] if !parts.with_device && is(last, "WITHDEVICE") => {
                parts.with_device = true;
                parts.users.end -= 1;
            }
            [_, .., word, value] if parts.viewer.is_none() && is(word, "VIEWER") => {
                parts.viewer = Some(Some(value));
                parts.users.end -= 2;
            }
            _ => break,
        }
    }
    parts
}

/// What PRESENCE.CONTACTS does.
#[derive(Debug, PartialEq, Eq)]
pub enum Contacts<'a> {
    List,
    Add(Vec<&'a [u8]>),
    Remove(Vec<&'a [u8]>),
}

/// `user (ADD|REM) contact [contact ...]` or `user LIST` of PRESENCE.CONTACTS.
pub fn contacts<'a>(args: &[&'a [u8]]) -> Parsed<(&'a [u8], Contacts<'a>)> {
    let [user, action, contacts @ ..] = args else {
        return Err(Error::WrongArity);
    };
    let user = id("user", user)?;
    let ids = || -> Parsed<Vec<&'a [u8]>> {
        if contacts.is_empty() {
            return Err(Error::WrongArity);
        }
        contacts.iter().map(|c| id("contact", c)).collect()
    };
    let action = if action.eq_ignore_ascii_case(b"LIST") {
        if !contacts.is_empty() {
            return Err(Error::WrongArity);
        }
        Contacts::List
    } else if action.eq_ignore_ascii_case(b"ADD") {
        Contacts::Add(ids()?)
    } else if action.eq_ignore_ascii_case(b"REM") {
        Contacts::Remove(ids()?)
    } else {
        return Err(Error::UnknownAction(shown(action)));
    };
    Ok((user, action))
}

/// `user [ONLINE rule] [LASTSEEN rule]` of PRESENCE.PRIVACY: the rules given (none: a read).
pub type PrivacyRules<'a> = (&'a [u8], Option<Audience>, Option<Audience>);

pub fn privacy<'a>(args: &[&'a [u8]]) -> Parsed<PrivacyRules<'a>> {
    let [user, rest @ ..] = args else {
        return Err(Error::WrongArity);
    };
    let user = id("user", user)?;
    let (online, last_seen) = privacy_rules(rest)?;
    Ok((user, online, last_seen))
}

/// A user id, a device id and the arguments after them.
pub type UserDevice<'a, 'b> = (&'a [u8], &'a [u8], &'b [&'a [u8]]);

/// `user device` and whatever follows.
pub fn user_and_device<'a, 'b>(args: &'b [&'a [u8]]) -> Parsed<UserDevice<'a, 'b>> {
    match args {
        [user, device, rest @ ..] => Ok((id("user", user)?, id("device", device)?, rest)),
        _ => Err(Error::Required("user and device")),
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
        [option] if option.eq_ignore_ascii_case(b"VIEWER") => Err(Error::NeedsValue("VIEWER")),
        _ => Ok((None, args)),
    }
}

/// The rules given to PRESENCE.PRIVACY: `[ONLINE rule] [LASTSEEN rule]`.
pub fn privacy_rules(args: &[&[u8]]) -> Parsed<(Option<Audience>, Option<Audience>)> {
    let mut rules = (None, None);
    for (option, value) in options(args, &["ONLINE", "LASTSEEN"])? {
        let audience = Audience::parse(value).ok_or_else(|| Error::UnknownRule {
            option,
            given: shown(value),
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
        return Err(Error::TooManyUsers {
            given: args.len(),
            max: max_bulk,
        });
    }
    args.iter().map(|u| id("user", u)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: std::fmt::Debug>(r: Parsed<T>) -> String {
        r.unwrap_err().to_string()
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
        assert_eq!(ttl(b"100"), Ok(Span(100)));
        assert_eq!(ttl(b"604800000"), Ok(Span(604_800_000)));
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
        assert_eq!(parsed.ttl, Some(Span(500)));
        assert_eq!(parsed.meta.as_deref(), Some("{}"));
        let plain = online(&[b"u", b"d"]).unwrap();
        assert_eq!((plain.ttl, plain.meta), (None, None));
    }

    #[test]
    fn online_takes_scopes_last() {
        let parsed = online(&[b"u", b"d", b"TTL", b"500", b"scope", b"z1", b"TTL"]).unwrap();
        assert_eq!(parsed.ttl, Some(Span(500)));
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
            err(heartbeat(&[b"u", b"d", b"SCOPE", b"s"])),
            "ERR unknown option 'SCOPE' (expected TTL or META)"
        );
        assert_eq!(
            heartbeat(&[b"u", b"d", b"META", b"{}", b"ACTIVE"])
                .unwrap()
                .meta
                .as_deref(),
            Some("{}")
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
        assert_eq!((h.ttl, h.active), (Some(Span(500)), true));
        let h = heartbeat(&[b"u", b"d", b"ACTIVE", b"TTL", b"500"]).unwrap();
        assert_eq!((h.ttl, h.active), (Some(Span(500)), true));
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
        assert_eq!(s.duration, Some(Span(60000)));
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
    fn bulk_takes_viewer_at_either_end_and_withdevice_after_the_users() {
        let v: &[u8] = b"v";
        let parts = |viewer, users, with_device| BulkParts {
            viewer,
            users,
            with_device,
        };
        let trailing: Vec<&[u8]> = vec![b"a", b"b", b"viewer", b"v"];
        assert_eq!(bulk_parts(&trailing), parts(Some(Some(v)), 0..2, false));
        let leading: Vec<&[u8]> = vec![b"VIEWER", b"v", b"a", b"b"];
        assert_eq!(bulk_parts(&leading), parts(Some(Some(v)), 2..4, false));
        let plain: Vec<&[u8]> = vec![b"a", b"b"];
        assert_eq!(bulk_parts(&plain), parts(None, 0..2, false));
        assert_eq!(bulk(&trailing, 10).unwrap(), bulk(&leading, 10).unwrap());
        for with in [
            vec![&b"a"[..], b"b", b"VIEWER", b"v", b"withdevice"],
            vec![&b"a"[..], b"b", b"WITHDEVICE", b"VIEWER", b"v"],
            vec![&b"VIEWER"[..], b"v", b"a", b"b", b"WITHDEVICE"],
        ] {
            let found = bulk(&with, 10).unwrap();
            assert_eq!(found.users, vec![&b"a"[..], b"b"], "{with:?}");
            assert_eq!((found.viewer, found.with_device), (Some(v), true));
        }
        // A lone trailing word is a user; a lone leading one needs its value.
        assert_eq!(bulk(&[b"a", b"VIEWER"], 10).unwrap().users.len(), 2);
        assert_eq!(bulk(&[b"WITHDEVICE"], 10).unwrap().users.len(), 1);
        assert_eq!(err(bulk(&[b"VIEWER"], 10)), "ERR VIEWER needs a value");
        assert_eq!(
            err(bulk(&[b"VIEWER", b"v"], 10)),
            "ERR wrong number of arguments"
        );
    }

    #[test]
    fn fanout_takes_an_event_and_contacts_or_viewers() {
        let parsed = fanout(&[b"u", b"CONTACTS"], 10).unwrap();
        assert_eq!((parsed.event, parsed.viewers), (None, Viewers::Contacts));
        let parsed = fanout(&[b"u", b"event", b"{}", b"viewers", b"a", b"b"], 10).unwrap();
        assert_eq!(parsed.event, Some(&b"{}"[..]));
        assert_eq!(parsed.viewers, Viewers::Listed(vec![&b"a"[..], b"b"]));
        assert_eq!(
            err(fanout(&[b"u", b"VIEWERS"], 10)),
            "ERR wrong number of arguments"
        );
        assert_eq!(err(fanout(&[b"u"], 10)), "ERR wrong number of arguments");
        assert_eq!(
            err(fanout(&[b"u", b"FRIENDS"], 10)),
            "ERR unknown option 'FRIENDS' (expected EVENT or CONTACTS or VIEWERS)"
        );
        assert_eq!(
            err(fanout(&[b"u", b"VIEWERS", b"a", b"b", b"c"], 2)),
            "ERR too many users: 3 given, max-bulk is 2"
        );
        assert!(err(fanout(&[b"u", b"VIEWERS", b""], 2)).contains("viewer id"));
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

    #[test]
    fn rooms_are_named_within_bounds_and_data_is_a_small_json_object() {
        let j = join(&[b"u", b"d", b"chat:1", b"data", br#"{"role":"host"}"#]).unwrap();
        assert_eq!(
            (j.user, j.device, j.room, j.data.as_deref()),
            (
                &b"u"[..],
                &b"d"[..],
                &b"chat:1"[..],
                Some(r#"{"role":"host"}"#)
            )
        );
        assert_eq!(join(&[b"u", b"d", b"r"]).unwrap().data, None);
        assert_eq!(
            err(join(&[b"u", b"d", b""])),
            "ERR room must be 1 to 128 bytes, got 0"
        );
        assert!(err(join(&[b"u", b"d", &[b'r'; 129]])).contains("got 129"));
        assert_eq!(
            err(join(&[b"u", b"d", b"r", b"DATA", b"[1]"])),
            "ERR DATA must be a JSON object, not another JSON value"
        );
        let big = format!("{{\"k\":\"{}\"}}", "x".repeat(MAX_DATA_LEN));
        assert!(err(join(&[b"u", b"d", b"r", b"DATA", big.as_bytes()])).contains("at most 1024"));
        assert!(err(join(&[b"u", b"d", b"r", b"DATA"])).contains("needs a value"));
        assert_eq!(join(&[b"u", b"d"]), Err(Error::WrongArity));
        assert_eq!(
            device_room(&[b"u", b"d", b"none"], true),
            Ok((&b"u"[..], &b"d"[..], None))
        );
        assert_eq!(
            device_room(&[b"u", b"d", b"NONE"], false),
            Ok((&b"u"[..], &b"d"[..], Some(&b"NONE"[..])))
        );
        assert_eq!(rooms(&[b"u"]), Ok((&b"u"[..], None)));
        assert_eq!(rooms(&[b"u", b"d", b"x"]), Err(Error::WrongArity));
        assert_eq!(typers(&[b"r"]), Ok(&b"r"[..]));
        let l = list(&[b"WITHDEVICES", b"SCOPE", b"r", b"WITHSCOPES"]).unwrap();
        assert!(l.with_devices && l.with_scopes);
        assert_eq!(l.scope, Some(&b"r"[..]));
    }
}
