//! Commands that describe themselves: `COMMAND DOCS` shows the README's syntax, `COMMAND INFO`
//! exact arity, flags, key specs and tips, ACL categories (Redis 7.2 and Valkey) and the
//! README's ACL rules (every server) let exactly the reads through, and `MODULE LIST` shows the
//! crate's version.

mod common;

use common::*;
use redis::{Connection, Value};
use std::collections::BTreeMap;

/// What `COMMAND INFO` must say: arity, flags, ACL categories (7.2 and Valkey), key-spec flags,
/// tips.
struct Expected {
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    categories: &'static [&'static str],
    key_flags: &'static [&'static str],
    tips: &'static [&'static str],
}

const fn e(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    categories: &'static [&'static str],
    key_flags: &'static [&'static str],
    tips: &'static [&'static str],
) -> Expected {
    Expected {
        name,
        arity,
        flags,
        categories,
        key_flags,
        tips,
    }
}

const WRITE_FAST: &[&str] = &["write", "denyoom", "module", "fast"];
const READ_FAST: &[&str] = &["readonly", "module", "fast"];
const RW_UPDATE: &[&str] = &["RW", "update"];
const RO_ACCESS: &[&str] = &["RO", "access"];

const EXPECTED: &[Expected] = &[
    e(
        "presence.online",
        -3,
        WRITE_FAST,
        &["@write", "@fast"],
        RW_UPDATE,
        &[],
    ),
    e(
        "presence.heartbeat",
        -3,
        WRITE_FAST,
        &["@write", "@fast"],
        RW_UPDATE,
        &[],
    ),
    e(
        "presence.offline",
        3,
        &["write", "module", "fast"],
        &["@write", "@fast"],
        &["RW", "delete"],
        &[],
    ),
    e(
        "presence.get",
        -2,
        READ_FAST,
        &["@read", "@fast"],
        RO_ACCESS,
        &[],
    ),
    e(
        "presence.bulk",
        -2,
        &["readonly", "module", "movablekeys"],
        &["@read", "@slow"],
        &["RO", "access", "incomplete"],
        &[],
    ),
    e(
        "presence.devices",
        2,
        READ_FAST,
        &["@read", "@fast"],
        RO_ACCESS,
        &[],
    ),
    e(
        "presence.status",
        -3,
        WRITE_FAST,
        &["@write", "@fast"],
        RW_UPDATE,
        &[],
    ),
    e(
        "presence.activity",
        -2,
        WRITE_FAST,
        &["@write", "@fast"],
        RW_UPDATE,
        &[],
    ),
    e(
        "presence.context",
        4,
        WRITE_FAST,
        &["@write", "@fast"],
        RW_UPDATE,
        &[],
    ),
    e(
        "presence.incontext",
        3,
        READ_FAST,
        &["@read", "@fast"],
        RO_ACCESS,
        &[],
    ),
    e(
        "presence.privacy",
        -2,
        WRITE_FAST,
        &["@write", "@fast"],
        &["RW", "access", "update"],
        &[],
    ),
    e(
        "presence.contacts",
        -3,
        &["write", "denyoom", "module"],
        &["@write", "@slow"],
        &["RW", "access", "update"],
        &[],
    ),
    e(
        "presence.fanout",
        -3,
        &["readonly", "module"],
        &["@read", "@slow"],
        RO_ACCESS,
        &[],
    ),
    e(
        "presence.channel",
        2,
        READ_FAST,
        &["@read", "@fast"],
        &[],
        &[],
    ),
    e(
        "presence.join",
        -4,
        WRITE_FAST,
        &["@write", "@fast"],
        RW_UPDATE,
        &[],
    ),
    e(
        "presence.leave",
        4,
        &["write", "module", "fast"],
        &["@write", "@fast"],
        &["RW", "delete"],
        &[],
    ),
    e(
        "presence.rooms",
        -2,
        READ_FAST,
        &["@read", "@fast"],
        RO_ACCESS,
        &[],
    ),
    e(
        "presence.typing",
        4,
        WRITE_FAST,
        &["@write", "@fast"],
        RW_UPDATE,
        &[],
    ),
    e(
        "presence.typers",
        2,
        &["readonly", "module"],
        &["@read", "@slow"],
        &[],
        &["nondeterministic_output", "request_policy:all_shards"],
    ),
    e(
        "presence.list",
        -1,
        &["readonly", "module"],
        &["@read", "@slow"],
        &[],
        &[
            "nondeterministic_output",
            "request_policy:special",
            "response_policy:special",
        ],
    ),
    e(
        "presence.count",
        -1,
        READ_FAST,
        &["@read", "@fast"],
        &[],
        &["request_policy:all_shards", "response_policy:agg_sum"],
    ),
    e(
        "presence.sweep",
        -1,
        &["write", "module"],
        &["@write", "@slow"],
        &[],
        &[
            "nondeterministic_output",
            "request_policy:all_shards",
            "response_policy:agg_sum",
        ],
    ),
    e("presence.clock", 2, READ_FAST, &["@fast"], &[], &[]),
];

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

/// Whether the server gives module commands ACL categories (Redis 7.2 and later, Valkey).
fn has_categories(kind: Kind) -> bool {
    kind != Kind::Redis
}

/// Renders one argument of a `COMMAND DOCS` reply the way the README writes syntax.
fn syntax(arg: &BTreeMap<String, Value>) -> String {
    let field = |name: &str| arg.get(name).map(text);
    let kind = field("type").expect("argument type");
    let flags = arg.get("flags").map(strings).unwrap_or_default();
    let body = match kind.as_str() {
        "pure-token" => String::new(),
        "oneof" => {
            let choices: Vec<String> = array(&arg["arguments"])
                .iter()
                .map(|a| syntax(&map(a)))
                .collect();
            format!("({})", choices.join("|"))
        }
        _ => field("name").expect("argument name"),
    };
    let mut out = match (field("token"), body.is_empty()) {
        (Some(token), true) => token,
        (Some(token), false) => format!("{token} {body}"),
        (None, _) => body.clone(),
    };
    if flags.iter().any(|f| f == "multiple") {
        out = format!("{out} [{body} ...]");
    }
    if flags.iter().any(|f| f == "optional") {
        out = format!("[{out}]");
    }
    out
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// The README's command headings: `PRESENCE.X args`, in order.
fn readme_headings() -> Vec<String> {
    readme()
        .lines()
        .filter_map(|line| line.strip_prefix("### PRESENCE."))
        .map(|rest| format!("PRESENCE.{rest}"))
        .collect()
}

#[test]
fn command_docs_show_the_syntax_the_readme_documents() {
    on_each_server(&[], |server| {
        let mut con = server.con();
        let headings = readme_headings();
        let mut listed: Vec<String> = redis::cmd("COMMAND")
            .arg("LIST")
            .arg("FILTERBY")
            .arg("MODULE")
            .arg("presence")
            .query(&mut con)
            .expect("COMMAND LIST");
        listed.sort();
        let mut documented: Vec<String> = headings
            .iter()
            .map(|h| h.split(' ').next().unwrap_or_default().to_ascii_lowercase())
            .collect();
        documented.sort();
        assert_eq!(listed, documented, "every command has a README heading");
        for heading in headings {
            let name = heading
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let reply = run(&mut con, &["COMMAND", "DOCS", &name]).expect("COMMAND DOCS");
            let docs = map(&map(&reply)[&name]);
            for field in ["summary", "since", "complexity"] {
                let value = docs.get(field).map(text).unwrap_or_default();
                assert!(!value.is_empty(), "{name} has no {field}");
            }
            assert_eq!(text(&docs["group"]), "module");
            let args = docs.get("arguments").map(array).unwrap_or_default();
            let mut shown = name.to_ascii_uppercase();
            for arg in &args {
                shown.push(' ');
                shown.push_str(&syntax(&map(arg)));
            }
            assert_eq!(shown, heading);
        }
    });
}

#[test]
fn command_info_gives_exact_arity_flags_key_specs_and_tips() {
    on_each_server(&[], |server| {
        let mut con = server.con();
        for expected in EXPECTED {
            let reply = run(&mut con, &["COMMAND", "INFO", expected.name]).expect("COMMAND INFO");
            let info = array(&array(&reply)[0]);
            assert_eq!(text(&info[0]), expected.name);
            assert_eq!(int(&info[1]), expected.arity, "{} arity", expected.name);
            let mut flags = strings(&info[2]);
            flags.sort();
            let mut want: Vec<String> = expected.flags.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(flags, want, "{} flags", expected.name);
            let categories = strings(&info[6]);
            let mut want: Vec<String> = if has_categories(server.kind) {
                expected.categories.iter().map(|s| s.to_string()).collect()
            } else {
                Vec::new()
            };
            if server.kind == Kind::Valkey {
                want.push("@presence".into());
            }
            assert_eq!(categories, want, "{} categories", expected.name);
            let tips = strings(&info[7]);
            assert_eq!(tips, expected.tips, "{} tips", expected.name);
            let specs = array(&info[8]);
            if expected.key_flags.is_empty() {
                assert!(specs.is_empty(), "{} has no keys", expected.name);
                continue;
            }
            assert_eq!(specs.len(), 1, "{} key specs", expected.name);
            let spec = map(&specs[0]);
            assert_eq!(
                strings(&spec["flags"]),
                expected.key_flags,
                "{} key spec",
                expected.name
            );
            let begin = map(&map(&spec["begin_search"])["spec"]);
            assert_eq!(int(&begin["index"]), 1, "{} keys begin", expected.name);
        }
    });
}

#[test]
fn bulk_keys_are_the_users_whichever_end_viewer_is_at() {
    on_each_server(&[], |server| {
        let mut con = server.con();
        for args in [
            vec!["PRESENCE.BULK", "u1", "u2", "VIEWER", "v"],
            vec!["PRESENCE.BULK", "VIEWER", "v", "u1", "u2"],
            vec!["PRESENCE.BULK", "u1", "u2"],
        ] {
            let mut getkeys = vec!["COMMAND", "GETKEYS"];
            getkeys.extend(&args);
            let keys = run(&mut con, &getkeys).expect("GETKEYS");
            assert_eq!(strings(&keys), ["u1", "u2"], "{args:?}");
        }
        // Both forms read the same rows.
        let user = unique("bulk");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let after = run(&mut con, &["PRESENCE.BULK", &user, "VIEWER", "v"]).unwrap();
        let before = run(&mut con, &["PRESENCE.BULK", "VIEWER", "v", &user]).unwrap();
        assert_eq!(after, before);
        assert_eq!(text(&array(&array(&after)[0])[1]), "online");
    });
}

fn user_key(prefix: &str) -> String {
    format!("{prefix}user")
}

/// Commands that change presence or settings, each form (PRIVACY and CONTACTS may write, so
/// their reading forms are declared as writes too).
fn writes(user: &str) -> Vec<Vec<String>> {
    [
        vec!["PRESENCE.ONLINE", user, "d"],
        vec!["PRESENCE.HEARTBEAT", user, "d"],
        vec!["PRESENCE.OFFLINE", user, "d"],
        vec!["PRESENCE.STATUS", user, "busy"],
        vec!["PRESENCE.ACTIVITY", user],
        vec!["PRESENCE.CONTEXT", user, "d", "chat"],
        vec!["PRESENCE.JOIN", user, "d", "chat"],
        vec!["PRESENCE.LEAVE", user, "d", "chat"],
        vec!["PRESENCE.TYPING", user, "d", "chat"],
        vec!["PRESENCE.PRIVACY", user, "ONLINE", "nobody"],
        vec!["PRESENCE.PRIVACY", user],
        vec!["PRESENCE.CONTACTS", user, "ADD", "c"],
        vec!["PRESENCE.CONTACTS", user, "REM", "c"],
        vec!["PRESENCE.CONTACTS", user, "LIST"],
        vec!["PRESENCE.SWEEP"],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect()
}

fn reads(user: &str) -> Vec<Vec<String>> {
    [
        vec!["PRESENCE.GET", user],
        vec!["PRESENCE.GET", user, "VIEWER", "v"],
        vec!["PRESENCE.BULK", user, user],
        vec!["PRESENCE.BULK", user, "VIEWER", "v"],
        vec!["PRESENCE.DEVICES", user],
        vec!["PRESENCE.INCONTEXT", user, "chat"],
        vec!["PRESENCE.FANOUT", user, "CONTACTS"],
        vec!["PRESENCE.FANOUT", user, "VIEWERS", "v"],
        vec!["PRESENCE.CHANNEL", user],
        vec!["PRESENCE.ROOMS", user],
        vec!["PRESENCE.ROOMS", user, "d"],
        vec!["PRESENCE.TYPERS", "chat"],
        vec!["PRESENCE.LIST"],
        vec!["PRESENCE.COUNT", "SCOPE", "team"],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect()
}

/// Whether `ACL DRYRUN` lets `acl_user` run `command`.
fn allowed(con: &mut Connection, acl_user: &str, command: &[String]) -> bool {
    let mut args = vec!["ACL", "DRYRUN", acl_user];
    args.extend(command.iter().map(String::as_str));
    match run(con, &args) {
        Ok(Value::Okay) => true,
        Ok(Value::SimpleString(s)) if s == "OK" => true,
        Ok(_) => false,
        Err(e) => panic!("ACL DRYRUN {command:?}: {e}"),
    }
}

fn check(con: &mut Connection, acl_user: &str, commands: &[Vec<String>], allow: bool) {
    for command in commands {
        assert_eq!(
            allowed(con, acl_user, command),
            allow,
            "{acl_user} {} {command:?}",
            if allow {
                "must be allowed"
            } else {
                "must be refused"
            }
        );
    }
}

fn set_user(con: &mut Connection, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER"];
    args.extend(rules);
    run(con, &args).expect("ACL SETUSER");
}

#[test]
fn acl_categories_separate_reads_from_writes() {
    if skip_on_external("creates ACL users") {
        return;
    }
    on_each_server(&[], |server| {
        if !has_categories(server.kind) {
            return;
        }
        let mut con = server.con();
        let user = user_key("acl");
        set_user(
            &mut con,
            &["no-writes", "on", "nopass", "~*", "+@all", "-@write"],
        );
        check(&mut con, "no-writes", &writes(&user), false);
        check(&mut con, "no-writes", &reads(&user), true);
        set_user(&mut con, &["reader", "on", "nopass", "~*", "+@read"]);
        check(&mut con, "reader", &reads(&user), true);
        check(&mut con, "reader", &writes(&user), false);
        // Read-only key permissions allow the reads and refuse every write that names a key.
        set_user(&mut con, &["key-reader", "on", "nopass", "%R~*", "+@all"]);
        check(&mut con, "key-reader", &reads(&user), true);
        let keyed: Vec<Vec<String>> = writes(&user)
            .into_iter()
            .filter(|c| c[0] != "PRESENCE.SWEEP")
            .collect();
        check(&mut con, "key-reader", &keyed, false);
        // Fast and slow are as declared: BULK, FANOUT, LIST, CONTACTS and SWEEP are the slow ones.
        set_user(
            &mut con,
            &["fast-only", "on", "nopass", "~*", "+@all", "-@slow"],
        );
        for command in reads(&user).iter().chain(writes(&user).iter()) {
            let slow = [
                "PRESENCE.BULK",
                "PRESENCE.FANOUT",
                "PRESENCE.TYPERS",
                "PRESENCE.LIST",
                "PRESENCE.CONTACTS",
                "PRESENCE.SWEEP",
            ]
            .contains(&command[0].as_str());
            assert_eq!(
                allowed(&mut con, "fast-only", command),
                !slow,
                "{command:?}"
            );
        }
        if server.kind == Kind::Valkey {
            // The module's own category holds every command.
            let mut listed = strings(&run(&mut con, &["ACL", "CAT", "presence"]).unwrap());
            listed.sort();
            assert_eq!(listed.len(), EXPECTED.len());
            set_user(
                &mut con,
                &["presence-only", "on", "nopass", "~*", "+@presence"],
            );
            check(&mut con, "presence-only", &reads(&user), true);
            check(&mut con, "presence-only", &writes(&user), true);
            assert!(!allowed(
                &mut con,
                "presence-only",
                &["GET".into(), "k".into()]
            ));
        }
    });
}

#[test]
fn the_readme_acl_rules_make_a_read_only_presence_user_on_every_server() {
    if skip_on_external("creates ACL users") {
        return;
    }
    // The rules exactly as the README gives them: `ACL SETUSER presence-... ` lines.
    let readme = readme();
    let rules: Vec<Vec<String>> = readme
        .lines()
        .filter(|line| line.starts_with("ACL SETUSER presence-"))
        .map(|line| line.split_whitespace().skip(2).map(str::to_owned).collect())
        .collect();
    assert_eq!(rules.len(), 2, "the README gives two ACL rules");
    on_each_server(&[], |server| {
        let mut con = server.con();
        let user = user_key("readme-acl");
        for rule in &rules {
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            set_user(&mut con, &rule);
        }
        check(&mut con, "presence-reader", &reads(&user), true);
        check(&mut con, "presence-reader", &writes(&user), false);
        check(&mut con, "presence-no-writes", &reads(&user), true);
        check(&mut con, "presence-no-writes", &writes(&user), false);
        // The others of `+@all -@write` stay as they were.
        assert!(allowed(
            &mut con,
            "presence-no-writes",
            &["GET".into(), "k".into()]
        ));
        assert!(!allowed(
            &mut con,
            "presence-no-writes",
            &["SET".into(), "k".into(), "v".into()]
        ));
    });
}

#[test]
fn module_list_shows_the_crate_version() {
    on_each_server(&[], |server| {
        let mut con = server.con();
        let modules = array(&run(&mut con, &["MODULE", "LIST"]).unwrap());
        let ours = modules
            .iter()
            .map(map)
            .find(|m| text(&m["name"]) == "presence")
            .expect("presence is loaded");
        let version: Vec<i64> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(
            int(&ours["ver"]),
            version[0] * 10000 + version[1] * 100 + version[2]
        );
    });
}

#[test]
fn redis_cli_help_shows_each_commands_syntax_and_summary() {
    if skip_on_external("runs redis-cli against servers it starts") {
        return;
    }
    on_each_server(&[], |server| {
        let mut con = server.con();
        for heading in readme_headings() {
            let (name, syntax) = heading.split_once(' ').unwrap_or((&heading, ""));
            let output = std::process::Command::new("redis-cli")
                .args(["-p", &server.port.to_string(), "help", name])
                .output()
                .expect("redis-cli (scripts/deps.sh installs redis-tools)");
            let shown = without_colours(&String::from_utf8_lossy(&output.stdout));
            let reply = run(&mut con, &["COMMAND", "DOCS", &name.to_ascii_lowercase()]).unwrap();
            let docs = map(&map(&reply)[&name.to_ascii_lowercase()]);
            let summary = text(&docs["summary"]);
            assert!(shown.contains(name), "{name}: {shown}");
            assert!(
                shown.contains(&summary),
                "{name} lacks its summary: {shown}"
            );
            // redis-cli writes a choice without the parentheses the README puts around it.
            let expected: String = syntax.chars().filter(|c| !"()".contains(*c)).collect();
            let shown_line = shown.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                shown_line.contains(&format!("{name} {expected}").trim_end().to_string()),
                "{name}: '{shown_line}' lacks '{expected}'"
            );
        }
    });
}

/// Text without its terminal colour codes (`ESC [ ... m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match (in_code, c) {
            (false, '\u{1b}') => in_code = true,
            (true, 'm') => in_code = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
