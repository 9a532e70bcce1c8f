//! Every error the module reports, and its text: replies to clients (a refused command changes
//! nothing) and the reasons a load fails. The README's Errors table quotes these texts; a test
//! checks that it does so exactly.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The server's own "wrong number of arguments" reply.
    WrongArity,
    /// A user, device, viewer, contact or context id of the wrong length.
    IdLength {
        what: &'static str,
        len: usize,
    },
    /// Not an integer, or one outside `min..=max` (`unit` follows the range).
    OutOfRange {
        what: &'static str,
        min: i64,
        max: i64,
        unit: &'static str,
        given: String,
    },
    UnknownOption {
        given: String,
        expected: &'static [&'static str],
    },
    NeedsValue(&'static str),
    GivenTwice(&'static str),
    /// Positional arguments that are missing, named.
    Required(&'static str),
    /// A JSON object argument (META, DATA) that is too long, not text, not an object, not JSON.
    JsonTooLarge {
        what: &'static str,
        max: usize,
        len: usize,
    },
    JsonNotText(&'static str),
    JsonNotObject(&'static str),
    JsonInvalid(&'static str, String),
    RoomLength(usize),
    TooManyRooms(usize),
    NotInRoom,
    ScopeLength(usize),
    TooManyScopes(usize),
    NoScope,
    InvalidCursor(String),
    OfflineNotSettable,
    UnknownStatus(String),
    WithAuto(&'static str),
    MessageTooLong(usize),
    MessageNotText,
    UnknownRule {
        option: &'static str,
        given: String,
    },
    UnknownAction(String),
    TooManyUsers {
        given: usize,
        max: usize,
    },
    TooManyDevices(usize),
    /// PRESENCE.FANOUT's EVENT is no event payload of the user's.
    NotAnEvent,
    DeviceNotConnected,
    WrongDatabase(i32),
    SweepNotHere,
    ClockFromClient,
    /// A write on a replica.
    Replica,
    /// A caught panic in `command`.
    Internal(String),
    /// Module arguments that are not name value pairs, a yes/no argument given something else,
    /// an argument that names no setting.
    ArgumentPairs,
    ArgumentNotBool(String),
    /// A setting that takes one of a few words given another.
    ArgumentNotChoice {
        name: &'static str,
        choices: &'static [&'static str],
        given: String,
    },
    ArgumentOutOfRange {
        name: &'static str,
        min: i64,
        max: i64,
        given: String,
    },
    UnknownArgument(String),
    /// `CONFIG SET` of a string setting (the server adds its own prefix to these).
    NulByte,
    StreamInCluster,
}

impl fmt::Display for Error {
    /// The text of the error: for replies, with its prefix (`ERR`, `READONLY`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            WrongArity => write!(f, "ERR wrong number of arguments"),
            IdLength { what, len } => write!(
                f,
                "ERR {what} id must be 1 to {} bytes, got {len}",
                crate::limits::MAX_ID_LEN
            ),
            OutOfRange {
                what,
                min,
                max,
                unit,
                given,
            } => {
                let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
                write!(f, "ERR {what} must be an integer from {min} to {max}{unit}, got '{given}'")
            }
            UnknownOption { given, expected } => write!(
                f,
                "ERR unknown option '{given}' (expected {})",
                expected.join(" or ")
            ),
            NeedsValue(option) => write!(f, "ERR {option} needs a value"),
            GivenTwice(option) => write!(f, "ERR {option} given more than once"),
            Required(what) => write!(f, "ERR {what} are required"),
            JsonTooLarge { what, max, len } => {
                write!(f, "ERR {what} must be at most {max} bytes, got {len}")
            }
            JsonNotText(what) => write!(f, "ERR {what} must be a JSON object (UTF-8 text)"),
            JsonNotObject(what) => {
                write!(f, "ERR {what} must be a JSON object, not another JSON value")
            }
            JsonInvalid(what, problem) => write!(f, "ERR {what} is not valid JSON: {problem}"),
            RoomLength(len) => write!(
                f,
                "ERR room must be 1 to {} bytes, got {len}",
                crate::limits::MAX_SCOPE_LEN
            ),
            TooManyRooms(n) => write!(f, "ERR device is already in {n} rooms (max-rooms)"),
            NotInRoom => write!(f, "ERR device is not in room (PRESENCE.JOIN it first)"),
            ScopeLength(len) => write!(
                f,
                "ERR scope must be 1 to {} bytes, got {len}",
                crate::limits::MAX_SCOPE_LEN
            ),
            TooManyScopes(n) => write!(
                f,
                "ERR a user may be in at most {} scopes, got {n}",
                crate::limits::MAX_SCOPES
            ),
            NoScope => write!(f, "ERR SCOPE needs at least one scope"),
            InvalidCursor(given) => write!(
                f,
                "ERR invalid cursor '{given}' (use 0 to start, then the cursor a reply gave)"
            ),
            OfflineNotSettable => write!(
                f,
                "ERR offline cannot be set: a user is offline when no device is connected"
            ),
            UnknownStatus(given) => write!(
                f,
                "ERR unknown status '{given}' (expected online, away, busy, dnd, invisible or auto)"
            ),
            WithAuto(option) => write!(f, "ERR {option} cannot be given with auto"),
            MessageTooLong(len) => write!(
                f,
                "ERR MESSAGE must be at most {} bytes, got {len}",
                crate::limits::MAX_MESSAGE_LEN
            ),
            MessageNotText => write!(f, "ERR MESSAGE must be UTF-8 text"),
            UnknownRule { option, given } => write!(
                f,
                "ERR {option} must be everyone, contacts or nobody, got '{given}'"
            ),
            UnknownAction(given) => write!(
                f,
                "ERR unknown action '{given}' (expected ADD, REM or LIST)"
            ),
            TooManyUsers { given, max } => write!(
                f,
                "ERR too many users: {given} given, max-bulk is {max}"
            ),
            NotAnEvent => write!(
                f,
                "ERR EVENT must be an event payload of this user, as the module published it"
            ),
            TooManyDevices(n) => write!(
                f,
                "ERR user already has {n} connected devices (max-devices)"
            ),
            DeviceNotConnected => write!(f, "ERR device is not connected"),
            WrongDatabase(db) => write!(
                f,
                "ERR presence data lives in database 0, this client selected {db} (SELECT 0)"
            ),
            SweepNotHere => write!(
                f,
                "ERR PRESENCE.SWEEP runs only on a master that is not loading"
            ),
            ClockFromClient => write!(
                f,
                "ERR PRESENCE.CLOCK is sent by a master to its replicas, not by clients"
            ),
            Replica => write!(
                f,
                "READONLY presence is written on the master only (this server is a replica)"
            ),
            Internal(command) => write!(
                f,
                "ERR presence: {command} hit an internal error and stopped (details in the server log)"
            ),
            ArgumentPairs => write!(f, "module arguments must be name value pairs"),
            ArgumentNotBool(name) => write!(f, "argument '{name}' must be yes or no"),
            ArgumentNotChoice {
                name,
                choices,
                given,
            } => write!(
                f,
                "argument '{name}' must be {}, got '{given}'",
                choices.join(" or ")
            ),
            ArgumentOutOfRange {
                name,
                min,
                max,
                given,
            } => write!(
                f,
                "argument '{name}' must be an integer from {min} to {max}, got '{given}'"
            ),
            UnknownArgument(name) => write!(f, "unknown module argument '{name}'"),
            NulByte => write!(f, "the value must not contain a NUL byte"),
            StreamInCluster => write!(
                f,
                "events-stream is not available in cluster mode: a stream is one key in one slot, \
                 and events come from every master (use the per-user sharded channels or the \
                 global channel)"
            ),
        }
    }
}

impl From<Error> for redis_module::RedisError {
    fn from(error: Error) -> Self {
        match error {
            Error::WrongArity => redis_module::RedisError::WrongArity,
            other => redis_module::RedisError::String(other.to_string()),
        }
    }
}

/// A client-given value shown inside an error message: printable ASCII, other bytes as `\xHH`,
/// at most 64 bytes of it. (Error replies must be one line, and the module crate passes only
/// ASCII through intact.)
pub fn shown(bytes: &[u8]) -> String {
    const LIMIT: usize = 64;
    let mut text = String::new();
    for &b in bytes.iter().take(LIMIT) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each reply, with the values the README's Errors table shows.
    fn examples() -> Vec<Error> {
        use Error::*;
        let range = |what, min, max, unit, given: &str| OutOfRange {
            what,
            min,
            max,
            unit,
            given: given.into(),
        };
        vec![
            UnknownOption {
                given: "FOO".into(),
                expected: &["TTL", "META", "SCOPE"],
            },
            NeedsValue("TTL"),
            GivenTwice("TTL"),
            range("TTL", 100, 604_800_000, "milliseconds", "99"),
            IdLength {
                what: "user",
                len: 513,
            },
            JsonNotObject("META"),
            JsonTooLarge {
                what: "META",
                max: 4096,
                len: 5000,
            },
            JsonTooLarge {
                what: "DATA",
                max: 1024,
                len: 2000,
            },
            JsonNotObject("DATA"),
            RoomLength(0),
            TooManyRooms(256),
            NotInRoom,
            UnknownStatus("sleeping".into()),
            OfflineNotSettable,
            MessageTooLong(300),
            range("FOR", 1, 2_592_000_000, "milliseconds", "0"),
            DeviceNotConnected,
            UnknownRule {
                option: "ONLINE",
                given: "friends".into(),
            },
            UnknownAction("KEEP".into()),
            ScopeLength(0),
            TooManyScopes(17),
            NoScope,
            range("LIMIT", 1, 1000, "", "0"),
            InvalidCursor("12".into()),
            range("LIMIT", 1, 100_000_000, "", "0"),
            NulByte,
            WrongDatabase(1),
            TooManyUsers {
                given: 1001,
                max: 1000,
            },
            TooManyDevices(32),
            NotAnEvent,
            Replica,
            ClockFromClient,
            Internal("presence.online".into()),
        ]
    }

    fn readme_errors_table() -> &'static str {
        let readme = include_str!("../README.md");
        let start = readme
            .find("\n## Errors\n")
            .expect("README has an Errors section");
        let rest = &readme[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
        &rest[..end]
    }

    #[test]
    fn the_readme_quotes_each_error_as_the_module_writes_it() {
        let table = readme_errors_table();
        for error in examples() {
            let text = match error.to_string() {
                text if text.starts_with("ERR ") || text.starts_with("READONLY ") => text,
                config_error => format!("ERR {config_error}"),
            };
            assert!(
                table.contains(&format!("`{text}`")),
                "README lacks `{text}`"
            );
        }
    }

    #[test]
    fn every_error_the_readme_quotes_is_one_the_module_writes() {
        // Configuration errors come after the server's own prefix.
        let written: Vec<String> = examples()
            .iter()
            .map(Error::to_string)
            .flat_map(|text| [format!("ERR {text}"), text])
            .collect();
        let server_own = ["ERR wrong number of arguments for", "WRONGTYPE "];
        for quoted in readme_errors_table().split('`').skip(1).step_by(2) {
            if !(quoted.starts_with("ERR ") || quoted.starts_with("READONLY ")) {
                continue;
            }
            if server_own.iter().any(|own| quoted.starts_with(own)) {
                continue;
            }
            let known = match quoted.strip_suffix("...") {
                Some(prefix) => {
                    written.iter().any(|w| w.starts_with(prefix)) || {
                        // A message with a detail of its own after the prefix.
                        prefix.ends_with(" is not valid JSON: ")
                            || prefix.starts_with("ERR events-stream is not available")
                    }
                }
                None => written.iter().any(|w| w == quoted),
            };
            assert!(
                known,
                "the README quotes `{quoted}`, which the module does not write"
            );
        }
    }

    #[test]
    fn values_are_shown_on_one_ascii_line() {
        assert_eq!(shown(b"a\r\nb\x00\xff"), "a\\x0d\\x0ab\\x00\\xff");
        assert_eq!(shown(&[b'x'; 70]), format!("{}...", "x".repeat(64)));
    }
}
