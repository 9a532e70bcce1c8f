//! What each command says about itself to the server: its syntax and summary (`COMMAND DOCS`,
//! `redis-cli help`), arity, flags, key specs and tips (`COMMAND INFO`), and ACL categories.
//! Plain data, registered by `lib.rs` through `server::describe_command`; the README's command
//! headings are rendered from the same argument trees (a unit test compares them).

/// The version every command has been in since (the module's first release).
const SINCE: &str = "0.1.0";

/// The ACL category of the module's own commands, where the server lets a module add one.
pub const ACL_CATEGORY: &str = "presence";

/// One command.
pub struct Command {
    /// Lower case, as registered.
    pub name: &'static str,
    pub summary: &'static str,
    pub complexity: &'static str,
    pub since: &'static str,
    /// As the server counts it (the command name included); negative: at least that many.
    pub arity: i32,
    /// Command flags, as `RedisModule_CreateCommand` takes them.
    pub flags: &'static str,
    /// ACL categories (the module's own is added where the server allows it).
    pub acl: &'static str,
    pub keys: &'static [KeySpec],
    /// Tips for clients (`request_policy:...`), space-separated.
    pub tips: &'static str,
    pub args: &'static [Arg],
}

/// Where a command's keys are, as an index-and-range key spec: from argument `first`, up to
/// `last` (relative to `first` when not negative; -1 is the last argument).
pub struct KeySpec {
    pub flags: u64,
    pub first: i32,
    pub last: i32,
    pub notes: &'static str,
}

/// Key-spec flags (the module API's `REDISMODULE_CMD_KEY_*` values).
pub mod key {
    /// Read only: the key's value is read, not changed.
    pub const RO: u64 = 1 << 0;
    /// Read and write.
    pub const RW: u64 = 1 << 1;
    /// What was stored is returned to the caller.
    pub const ACCESS: u64 = 1 << 4;
    /// What is stored is changed (or created).
    pub const UPDATE: u64 = 1 << 5;
    /// Part of what is stored is removed.
    pub const DELETE: u64 = 1 << 7;
    /// The spec alone does not tell the keys exactly: the server asks the module (and clients
    /// ask `COMMAND GETKEYS`).
    pub const INCOMPLETE: u64 = 1 << 9;
}

/// One argument of a command's syntax.
#[derive(Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub kind: Kind,
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
}

#[derive(Clone, Copy)]
pub enum Kind {
    /// A key: the user id, found by the key spec of this index.
    Key(u32),
    String,
    Integer,
    /// The token alone.
    PureToken,
    /// Exactly one of the arguments.
    OneOf(&'static [Arg]),
}

impl Arg {
    const fn new(name: &'static str, kind: Kind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
        }
    }
    const fn key(name: &'static str) -> Arg {
        Arg::new(name, Kind::Key(0))
    }
    const fn string(name: &'static str) -> Arg {
        Arg::new(name, Kind::String)
    }
    const fn integer(name: &'static str) -> Arg {
        Arg::new(name, Kind::Integer)
    }
    /// A word that stands for itself (`ACTIVE`, `NONE`, `online`).
    const fn word(token: &'static str) -> Arg {
        Arg::new(token, Kind::PureToken).token(token)
    }
    const fn one_of(name: &'static str, choices: &'static [Arg]) -> Arg {
        Arg::new(name, Kind::OneOf(choices))
    }
    const fn token(self, token: &'static str) -> Arg {
        Arg {
            token: Some(token),
            ..self
        }
    }
    const fn optional(self) -> Arg {
        Arg {
            optional: true,
            ..self
        }
    }
    const fn multiple(self) -> Arg {
        Arg {
            multiple: true,
            ..self
        }
    }

    #[cfg(test)]
    /// The argument as documentation writes it: `[TTL ms]`, `user [user ...]`,
    /// `(online|away)`.
    pub fn syntax(&self) -> String {
        let body = match self.kind {
            Kind::PureToken => String::new(),
            Kind::OneOf(choices) => {
                let choices: Vec<String> = choices.iter().map(Arg::syntax).collect();
                format!("({})", choices.join("|"))
            }
            _ => self.name.to_owned(),
        };
        let mut text = match (self.token, body.is_empty()) {
            (Some(token), true) => token.to_owned(),
            (Some(token), false) => format!("{token} {body}"),
            (None, _) => body.clone(),
        };
        if self.multiple {
            text = format!("{text} [{body} ...]");
        }
        if self.optional {
            text = format!("[{text}]");
        }
        text
    }
}

impl Command {
    #[cfg(test)]
    /// The command's syntax as the README's heading for it writes it.
    pub fn syntax(&self) -> String {
        let mut text = self.name.to_ascii_uppercase();
        for arg in self.args {
            text.push(' ');
            text.push_str(&arg.syntax());
        }
        text
    }
}

/// The user id: every key a command touches is in its slot.
const USER_KEY: &str = "the user id: every key the command touches is in its hash slot";

const READS_USER: &[KeySpec] = &[KeySpec {
    flags: key::RO | key::ACCESS,
    first: 1,
    last: 0,
    notes: USER_KEY,
}];
const UPDATES_USER: &[KeySpec] = &[KeySpec {
    flags: key::RW | key::UPDATE,
    first: 1,
    last: 0,
    notes: USER_KEY,
}];
const UPDATES_AND_READS_USER: &[KeySpec] = &[KeySpec {
    flags: key::RW | key::ACCESS | key::UPDATE,
    first: 1,
    last: 0,
    notes: USER_KEY,
}];

const USER: Arg = Arg::key("user");
const DEVICE: Arg = Arg::string("device");
const TTL: Arg = Arg::integer("ms").token("TTL").optional();
const SCOPE: Arg = Arg::string("s").token("SCOPE").optional();
const VIEWER: Arg = Arg::string("v").token("VIEWER").optional();
const AUDIENCE: &[Arg] = &[
    Arg::word("everyone"),
    Arg::word("contacts"),
    Arg::word("nobody"),
];

pub const ONLINE: Command = Command {
    name: "presence.online",
    summary: "Registers a connected device of a user, or refreshes it, until now + TTL.",
    complexity: "O(D + S): D the user's devices, S the scopes given",
    since: SINCE,
    arity: -3,
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_USER,
    tips: "",
    args: &[
        USER,
        DEVICE,
        TTL,
        Arg::string("json").token("META").optional(),
        SCOPE.multiple(),
    ],
};

pub const HEARTBEAT: Command = Command {
    name: "presence.heartbeat",
    summary:
        "Pushes a connected device's deadline to now + TTL, registering it if it is not connected.",
    complexity: "O(D): D the user's devices",
    since: SINCE,
    arity: -3,
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_USER,
    tips: "",
    args: &[
        USER,
        DEVICE,
        TTL,
        Arg::word("ACTIVE").optional(),
        Arg::string("json").token("META").optional(),
    ],
};

pub const OFFLINE: Command = Command {
    name: "presence.offline",
    summary: "Removes a device that left; the user is offline when it was their last.",
    complexity: "O(D + S): D the user's devices, S their scopes",
    since: SINCE,
    arity: 3,
    flags: "write fast",
    acl: "write fast",
    keys: &[KeySpec {
        flags: key::RW | key::DELETE,
        first: 1,
        last: 0,
        notes: USER_KEY,
    }],
    tips: "",
    args: &[USER, DEVICE],
};

pub const GET: Command = Command {
    name: "presence.get",
    summary: "Returns a user's presence: status, devices, last seen, since, message, activity.",
    complexity: "O(D): D the user's devices",
    since: SINCE,
    arity: -2,
    flags: "readonly fast",
    acl: "read fast",
    keys: READS_USER,
    tips: "",
    args: &[USER, VIEWER],
};

pub const BULK: Command = Command {
    name: "presence.bulk",
    summary: "Returns status, last seen and devices of each of many users of one slot.",
    complexity: "O(N * D): N the users given, D their devices",
    since: SINCE,
    arity: -2,
    flags: "readonly getkeys-api",
    acl: "read slow",
    keys: &[KeySpec {
        // The users come first; a trailing `VIEWER v` is in the range but is no key.
        flags: key::RO | key::ACCESS | key::INCOMPLETE,
        first: 1,
        last: -1,
        notes: "the users; a VIEWER clause at either end is not a key (COMMAND GETKEYS is exact)",
    }],
    tips: "",
    args: &[
        Arg::key("user").multiple(),
        VIEWER,
        Arg::word("WITHDEVICE").optional(),
    ],
};

pub const DEVICES: Command = Command {
    name: "presence.devices",
    summary: "Returns a user's connected devices, oldest connection first.",
    complexity: "O(D): D the user's devices",
    since: SINCE,
    arity: 2,
    flags: "readonly fast",
    acl: "read fast",
    keys: READS_USER,
    tips: "",
    args: &[USER],
};

pub const STATUS: Command = Command {
    name: "presence.status",
    summary: "Sets a user's status by hand, with an optional message and duration, or clears it.",
    complexity: "O(D + S): D the user's devices, S their scopes",
    since: SINCE,
    arity: -3,
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_USER,
    tips: "",
    args: &[
        USER,
        Arg::one_of(
            "status",
            &[
                Arg::word("online"),
                Arg::word("away"),
                Arg::word("busy"),
                Arg::word("dnd"),
                Arg::word("invisible"),
                Arg::word("auto"),
            ],
        ),
        Arg::string("text").token("MESSAGE").optional(),
        Arg::integer("ms").token("FOR").optional(),
    ],
};

pub const ACTIVITY: Command = Command {
    name: "presence.activity",
    summary: "Records activity of a user (or one of their devices); ends auto-away.",
    complexity: "O(D + S): D the user's devices, S their scopes",
    since: SINCE,
    arity: -2,
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_USER,
    tips: "",
    args: &[USER, DEVICE.optional()],
};

pub const CONTEXT: Command = Command {
    name: "presence.context",
    summary: "Records which conversation a connected device has open, or closes it.",
    complexity: "O(D): D the user's devices",
    since: SINCE,
    arity: 4,
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_USER,
    tips: "",
    args: &[
        USER,
        DEVICE,
        Arg::one_of("open", &[Arg::string("context"), Arg::word("NONE")]),
    ],
};

pub const INCONTEXT: Command = Command {
    name: "presence.incontext",
    summary: "Tells whether any connected device of a user has a conversation open.",
    complexity: "O(D): D the user's devices",
    since: SINCE,
    arity: 3,
    flags: "readonly fast",
    acl: "read fast",
    keys: READS_USER,
    tips: "",
    args: &[USER, Arg::string("context")],
};

pub const PRIVACY: Command = Command {
    name: "presence.privacy",
    summary: "Sets who may see a user online and their last seen, or returns the rules.",
    complexity: "O(1)",
    since: SINCE,
    arity: -2,
    // Without rules it only reads; it is declared by what it may do.
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_AND_READS_USER,
    tips: "",
    args: &[
        USER,
        Arg::one_of("online", AUDIENCE).token("ONLINE").optional(),
        Arg::one_of("lastseen", AUDIENCE)
            .token("LASTSEEN")
            .optional(),
    ],
};

pub const CONTACTS: Command = Command {
    name: "presence.contacts",
    summary: "Adds, removes or lists the contacts of a user, for the privacy rules.",
    complexity: "O(N): N the contacts given, or the user's contacts for LIST",
    since: SINCE,
    arity: -3,
    // LIST only reads; the command is declared by what it may do.
    flags: "write deny-oom",
    acl: "write slow",
    keys: UPDATES_AND_READS_USER,
    tips: "",
    args: &[
        USER,
        Arg::one_of(
            "action",
            &[
                Arg::string("contact").token("ADD").multiple(),
                Arg::string("contact").token("REM").multiple(),
                Arg::word("LIST"),
            ],
        ),
    ],
};

pub const FANOUT: Command = Command {
    name: "presence.fanout",
    summary: "Returns what each of a user's contacts, or of the viewers given, may see of the user or of one of their events.",
    complexity: "O(N): N the viewers",
    since: SINCE,
    arity: -3,
    flags: "readonly",
    acl: "read slow",
    keys: READS_USER,
    tips: "",
    args: &[
        USER,
        Arg::string("payload").token("EVENT").optional(),
        Arg::one_of(
            "viewers",
            &[
                Arg::word("CONTACTS"),
                Arg::string("viewer").token("VIEWERS").multiple(),
            ],
        ),
    ],
};

pub const CHANNEL: Command = Command {
    name: "presence.channel",
    summary: "Returns the name of a user's own event channel, for SSUBSCRIBE.",
    complexity: "O(1)",
    since: SINCE,
    arity: 2,
    flags: "readonly fast",
    acl: "read fast",
    keys: &[],
    tips: "",
    args: &[Arg::string("user")],
};

const ROOM: Arg = Arg::string("room");

pub const JOIN: Command = Command {
    name: "presence.join",
    summary: "Puts a connected device in a room, with optional member data.",
    complexity: "O(D + R): D the user's devices, R their rooms",
    since: SINCE,
    arity: -4,
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_USER,
    tips: "",
    args: &[
        USER,
        DEVICE,
        ROOM,
        Arg::string("json").token("DATA").optional(),
    ],
};

pub const LEAVE: Command = Command {
    name: "presence.leave",
    summary: "Takes a device out of a room.",
    complexity: "O(D + R): D the user's devices, R their rooms",
    since: SINCE,
    arity: 4,
    flags: "write fast",
    acl: "write fast",
    keys: &[KeySpec {
        flags: key::RW | key::DELETE,
        first: 1,
        last: 0,
        notes: USER_KEY,
    }],
    tips: "",
    args: &[USER, DEVICE, ROOM],
};

pub const ROOMS: Command = Command {
    name: "presence.rooms",
    summary: "Returns the rooms a user is in, or those of one device with its member data.",
    complexity: "O(D + R): D the user's devices, R their rooms",
    since: SINCE,
    arity: -2,
    flags: "readonly fast",
    acl: "read fast",
    keys: READS_USER,
    tips: "",
    args: &[USER, DEVICE.optional()],
};

pub const TYPING: Command = Command {
    name: "presence.typing",
    summary: "Records that a device types in a room, for a bounded time, or stops it.",
    complexity: "O(D + R): D the user's devices, R their rooms",
    since: SINCE,
    arity: 4,
    flags: "write deny-oom fast",
    acl: "write fast",
    keys: UPDATES_USER,
    tips: "",
    args: &[
        USER,
        DEVICE,
        Arg::one_of("typing", &[ROOM, Arg::word("NONE")]),
    ],
};

pub const TYPERS: Command = Command {
    name: "presence.typers",
    summary: "Lists the devices typing in a room on this node.",
    complexity: "O(A): A the room's members active within typing-timeout",
    since: SINCE,
    arity: 2,
    flags: "readonly",
    acl: "read slow",
    keys: &[],
    // Node-local: a cluster client asks every master and joins the replies.
    tips: "nondeterministic_output request_policy:all_shards",
    args: &[ROOM],
};

pub const LIST: Command = Command {
    name: "presence.list",
    summary: "Lists the users online on this node, most recently active first, a page at a time.",
    complexity: "O(N + M): N the rows asked, M the slots holding them",
    since: SINCE,
    arity: -1,
    flags: "readonly",
    acl: "read slow",
    keys: &[],
    // Node-local, with a cursor per node: as SCAN, a cluster client merges it itself.
    tips: "nondeterministic_output request_policy:special response_policy:special",
    args: &[
        SCOPE,
        Arg::integer("n").token("LIMIT").optional(),
        Arg::string("c").token("CURSOR").optional(),
        Arg::word("WITHSCOPES").optional(),
        Arg::word("WITHDEVICES").optional(),
    ],
};

pub const COUNT: Command = Command {
    name: "presence.count",
    summary: "Returns the number of users online on this node.",
    complexity: "O(1)",
    since: SINCE,
    arity: -1,
    flags: "readonly fast",
    acl: "read fast",
    keys: &[],
    // Each node counts its own users: the cluster's count is the sum over the masters.
    tips: "request_policy:all_shards response_policy:agg_sum",
    args: &[SCOPE],
};

pub const SWEEP: Command = Command {
    name: "presence.sweep",
    summary: "Removes devices past their deadline now and announces the changes.",
    complexity: "O(N): N the devices removed, at most LIMIT",
    since: SINCE,
    arity: -1,
    flags: "write",
    acl: "write slow",
    keys: &[],
    tips: "nondeterministic_output request_policy:all_shards response_policy:agg_sum",
    args: &[Arg::integer("n").token("LIMIT").optional()],
};

pub const CLOCK: Command = Command {
    name: "presence.clock",
    summary: "Internal: a master's module time, sent to its replicas.",
    complexity: "O(1)",
    since: SINCE,
    arity: 2,
    flags: "readonly fast",
    acl: "fast",
    keys: &[],
    tips: "",
    args: &[Arg::integer("ms")],
};

/// Every command, in the README's order.
pub const ALL: &[&Command] = &[
    &ONLINE, &HEARTBEAT, &OFFLINE, &GET, &BULK, &DEVICES, &STATUS, &ACTIVITY, &CONTEXT, &INCONTEXT,
    &PRIVACY, &CONTACTS, &FANOUT, &CHANNEL, &JOIN, &LEAVE, &ROOMS, &TYPING, &TYPERS, &LIST, &COUNT,
    &SWEEP, &CLOCK,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's `### PRESENCE.X ...` headings, in order.
    fn readme_headings() -> Vec<String> {
        let readme = include_str!("../../README.md");
        readme
            .lines()
            .filter_map(|line| line.strip_prefix("### PRESENCE."))
            .map(|rest| format!("PRESENCE.{rest}"))
            .collect()
    }

    #[test]
    fn the_readme_headings_are_the_documented_syntax() {
        let documented: Vec<String> = ALL.iter().map(|c| c.syntax()).collect();
        assert_eq!(readme_headings(), documented);
    }

    /// The fewest words an argument takes, and whether it always takes that many.
    fn words(arg: &Arg) -> (i32, bool) {
        let (least, fixed) = match arg.kind {
            Kind::PureToken => (0, true),
            Kind::OneOf(choices) => {
                let each: Vec<(i32, bool)> = choices.iter().map(words).collect();
                let least = each.iter().map(|w| w.0).min().unwrap_or(0);
                (least, each.iter().all(|&(n, fixed)| fixed && n == least))
            }
            _ => (1, true),
        };
        let least = least + i32::from(arg.token.is_some());
        (least, fixed && !arg.multiple)
    }

    #[test]
    fn arity_matches_the_arguments() {
        for command in ALL {
            let mut least = 1;
            let mut fixed = true;
            for arg in command.args {
                let (n, always) = words(arg);
                if arg.optional {
                    fixed = false;
                } else {
                    least += n;
                    fixed &= always;
                }
            }
            let expected = if fixed { least } else { -least };
            assert_eq!(command.arity, expected, "{}", command.name);
        }
    }

    #[test]
    fn flags_and_categories_agree() {
        for command in ALL {
            let flags: Vec<&str> = command.flags.split(' ').collect();
            let acl: Vec<&str> = command.acl.split(' ').collect();
            let write = flags.contains(&"write");
            assert_eq!(write, acl.contains(&"write"), "{}", command.name);
            assert_eq!(
                flags.contains(&"fast"),
                acl.contains(&"fast"),
                "{}",
                command.name
            );
            assert_eq!(
                !flags.contains(&"fast"),
                acl.contains(&"slow"),
                "{}",
                command.name
            );
            // CLOCK is not a read for users: it is refused to clients.
            let read = flags.contains(&"readonly") && command.name != "presence.clock";
            assert_eq!(read, acl.contains(&"read"), "{}", command.name);
            for spec in command.keys {
                let read_only = spec.flags & key::RO != 0;
                assert_eq!(read_only, !write, "{}", command.name);
            }
        }
    }
}
