//! Random PRESENCE.* calls against real servers: the server stays up, every reply is a valid reply
//! or an ERR/WRONGTYPE error, and afterwards the keys are consistent (every index entry names a
//! registered device, every registered device is indexed, the INFO gauges match).
//!
//! Seeded, so a failure can be replayed: the seed is printed, and PRESENCE_FUZZ_SEED=<seed> runs
//! that one again. PRESENCE_FUZZ_CALLS changes the number of calls (default 100,000 per server).

mod common;

use common::*;
use redis::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A user or device id: mostly from a small pool, so state builds up; sometimes odd.
fn id(rng: &mut Rng, pool: &str) -> Vec<u8> {
    match rng.below(20) {
        0 => Vec::new(),
        1 => vec![b'x'; 513],
        2 => {
            let len = 1 + rng.below(40) as usize;
            rng.bytes(len)
        }
        3 => format!("{{{pool}{}}}", rng.below(5)).into_bytes(),
        4 => vec![b'z'; 512],
        _ => format!("{pool}{}", rng.below(60)).into_bytes(),
    }
}

fn number(rng: &mut Rng) -> Vec<u8> {
    let text = match rng.below(12) {
        0 => "-1".to_string(),
        1 => "0".to_string(),
        2 => "99999999999999999999999".to_string(),
        3 => "abc".to_string(),
        4 => String::new(),
        5 => "1.5".to_string(),
        6 => i64::MAX.to_string(),
        7 => i64::MIN.to_string(),
        8 => "604800000".to_string(),
        _ => (100 + rng.below(900)).to_string(),
    };
    text.into_bytes()
}

fn meta(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => b"[1,2,3]".to_vec(),
        1 => b"{\"unterminated\":".to_vec(),
        2 => format!("{{\"big\":\"{}\"}}", "m".repeat(5000)).into_bytes(),
        3 => {
            let len = rng.below(64) as usize;
            rng.bytes(len)
        }
        4 => b"null".to_vec(),
        _ => format!("{{\"os\":\"v{}\",\"n\":{}}}", rng.below(9), rng.below(1000)).into_bytes(),
    }
}

/// One random call.
fn call(rng: &mut Rng) -> Vec<Vec<u8>> {
    let name: &[u8] = match rng.below(31) {
        0..=3 => b"PRESENCE.ONLINE",
        4..=7 => b"PRESENCE.HEARTBEAT",
        8..=9 => b"PRESENCE.OFFLINE",
        10 => b"PRESENCE.GET",
        11 => b"PRESENCE.BULK",
        12 => b"PRESENCE.DEVICES",
        13 => b"PRESENCE.SWEEP",
        14 => b"presence.online",
        15 | 16 => b"PRESENCE.STATUS",
        17 => b"PRESENCE.ACTIVITY",
        18 => b"PRESENCE.CONTEXT",
        19 => b"PRESENCE.INCONTEXT",
        20 => b"PRESENCE.PRIVACY",
        21 => b"PRESENCE.CONTACTS",
        22 => b"PRESENCE.GET",
        23 => b"PRESENCE.LIST",
        24 => b"PRESENCE.COUNT",
        25 | 26 => b"PRESENCE.JOIN",
        27 => b"PRESENCE.LEAVE",
        28 => b"PRESENCE.TYPING",
        29 => b"PRESENCE.ROOMS",
        30 => b"PRESENCE.TYPERS",
        _ => b"PRESENCE.HEARTBEAT",
    };
    let mut args = vec![name.to_vec()];
    let positional = match rng.below(10) {
        0 => rng.below(4) as usize, // any count, wrong ones included
        _ => match name {
            b"PRESENCE.GET" | b"PRESENCE.DEVICES" => 1,
            b"PRESENCE.BULK" => 1 + rng.below(8) as usize,
            b"PRESENCE.SWEEP" | b"PRESENCE.LIST" | b"PRESENCE.COUNT" => 0,
            b"PRESENCE.ACTIVITY" => 1 + rng.below(2) as usize,
            b"PRESENCE.CONTEXT" => 3,
            b"PRESENCE.JOIN" | b"PRESENCE.LEAVE" | b"PRESENCE.TYPING" => 3,
            b"PRESENCE.ROOMS" => 1 + rng.below(2) as usize,
            b"PRESENCE.TYPERS" => 1,
            b"PRESENCE.PRIVACY" => 1,
            b"PRESENCE.CONTACTS" => 1,
            _ => 2,
        },
    };
    for i in 0..positional {
        if name == b"PRESENCE.STATUS" && i == 1 {
            let statuses: [&[u8]; 8] = [
                b"online",
                b"away",
                b"busy",
                b"DND",
                b"invisible",
                b"auto",
                b"offline",
                b"nap",
            ];
            args.push(statuses[rng.below(8) as usize].to_vec());
        } else if name == b"PRESENCE.TYPERS" || i == 2 {
            // A room: few names, so joins, typing and reads meet.
            args.push(match rng.below(8) {
                0 => b"NONE".to_vec(),
                _ => id(rng, "s"),
            });
        } else {
            args.push(id(rng, if i == 0 { "u" } else { "d" }));
        }
    }
    if name == b"PRESENCE.JOIN" && rng.below(2) == 0 {
        args.push(b"DATA".to_vec());
        args.push(meta(rng));
    }
    if name == b"PRESENCE.CONTACTS" {
        let actions: [&[u8]; 4] = [b"ADD", b"rem", b"LIST", b"DROP"];
        args.push(actions[rng.below(4) as usize].to_vec());
        for _ in 0..rng.below(3) {
            args.push(id(rng, "u"));
        }
    }
    for _ in 0..rng.below(3) {
        match rng.below(13) {
            11 => {
                args.push(b"SCOPE".to_vec());
                for _ in 0..rng.below(3) {
                    args.push(id(rng, "s"));
                }
            }
            12 => {
                let cursors: [&[u8]; 4] = [b"0", b"1700000000000-61", b"12", b"-1-"];
                args.push(b"CURSOR".to_vec());
                args.push(cursors[rng.below(4) as usize].to_vec());
            }
            8 => {
                args.push(b"VIEWER".to_vec());
                args.push(id(rng, "u"));
            }
            9 | 10 => {
                let rules: [&[u8]; 2] = [b"ONLINE", b"LASTSEEN"];
                let audiences: [&[u8]; 4] = [b"everyone", b"contacts", b"NOBODY", b"friends"];
                args.push(rules[rng.below(2) as usize].to_vec());
                args.push(audiences[rng.below(4) as usize].to_vec());
            }
            0 | 1 => {
                args.push(b"TTL".to_vec());
                args.push(number(rng));
            }
            6 => {
                args.push(b"FOR".to_vec());
                args.push(number(rng));
            }
            7 => {
                args.push(b"MESSAGE".to_vec());
                let len = rng.below(300) as usize;
                args.push(rng.bytes(len));
            }
            2 => {
                args.push(b"meta".to_vec());
                args.push(meta(rng));
            }
            3 => {
                args.push(b"LIMIT".to_vec());
                args.push(number(rng));
            }
            4 => args.push(b"TTL".to_vec()),
            5 => {
                let flags: [&[u8]; 3] = [b"WITHDEVICES", b"WITHSCOPES", b"withdevices"];
                args.push(flags[rng.below(3) as usize].to_vec());
            }
            _ => {
                let len = rng.below(10) as usize;
                args.push(rng.bytes(len));
            }
        }
    }
    args
}

fn check_reply(reply: &Value, args: &[Vec<u8>]) {
    match reply {
        Value::ServerError(e) => {
            let code = e.code();
            assert!(
                code == "ERR" || code == "WRONGTYPE",
                "unexpected error {e:?} for {}",
                String::from_utf8_lossy(&args[0])
            );
        }
        Value::Int(_) | Value::BulkString(_) | Value::Nil | Value::Okay => {}
        Value::Array(items) => items.iter().for_each(|v| check_reply(v, args)),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// The keyspace's presence data is consistent: every due entry names a device registered in its
/// user's record, every registered device has its entry, and the INFO gauges count them.
fn check_consistency(con: &mut redis::Connection, external: bool) {
    let due_keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("presence:due:*").query(con).unwrap();
    let mut indexed: BTreeSet<(Vec<u8>, Vec<u8>)> = BTreeSet::new();
    // The members of every sorted set whose name matches `pattern`.
    let members = |con: &mut redis::Connection, pattern: &str| -> BTreeSet<Vec<u8>> {
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(pattern).query(con).unwrap();
        let mut all = BTreeSet::new();
        for key in keys {
            let users: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query(con)
                .unwrap();
            all.extend(users);
        }
        all
    };
    // Users with a timer of their own (going idle, a manual status ending).
    let timers = members(con, "presence:timers:*");
    for key in &due_keys {
        let entries: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(con)
            .unwrap();
        for (member, _) in entries {
            let colon = member
                .iter()
                .position(|&b| b == b':')
                .expect("member length");
            let len: usize = std::str::from_utf8(&member[..colon])
                .unwrap()
                .parse()
                .unwrap();
            let user = member[colon + 1..colon + 1 + len].to_vec();
            assert_eq!(member[colon + 1 + len], b':');
            let device = member[colon + 2 + len..].to_vec();
            indexed.insert((user, device));
        }
    }
    let mut registered: BTreeSet<(Vec<u8>, Vec<u8>)> = BTreeSet::new();
    let mut users: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (user, _) in &indexed {
        *users.entry(user.clone()).or_default() += 1;
    }
    for user in users.keys() {
        let devices = array(&call_bytes(con, &[b"PRESENCE.DEVICES", user]));
        for d in devices {
            registered.insert((user.clone(), bytes(&map(&d)["device"])));
        }
    }
    let only_indexed: Vec<_> = indexed.difference(&registered).collect();
    let only_registered: Vec<_> = registered.difference(&indexed).collect();
    assert!(
        only_indexed.is_empty() && only_registered.is_empty(),
        "index entries without a connected device: {only_indexed:?}; \
         connected devices without an index entry: {only_registered:?}"
    );
    for user in &timers {
        // A timer belongs to a connected user (going idle) or to a manual status (its end).
        let g = map(&call_bytes(con, &[b"PRESENCE.GET", user]));
        assert!(
            users.contains_key(user) || int(&g["manual"]) == 1,
            "a timer for {user:?}, who has neither a device nor a manual status"
        );
    }
    // No record holds a device field without an index entry.
    let record_keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("presence:{*").query(con).unwrap();
    let mut device_fields = 0usize;
    for key in &record_keys {
        let fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(key).query(con).unwrap();
        device_fields += fields.iter().filter(|f| f.starts_with(b"dev:")).count();
    }
    assert_eq!(
        device_fields,
        indexed.len(),
        "device fields without index entries"
    );
    // The listing of everyone holds exactly the users that others see online, and each scope
    // listing only users of that listing.
    let listed = members(con, "presence:online:*");
    let visible: BTreeSet<Vec<u8>> = users
        .keys()
        .filter(|user| {
            let g = map(&call_bytes(con, &[b"PRESENCE.GET", user]));
            text(&g["status"]) != "invisible"
        })
        .cloned()
        .collect();
    assert_eq!(listed, visible, "the listing of everyone");
    if !external {
        // Each room (scopes included) lists exactly the listed users whose record puts them in
        // it, as COUNT and LIST page it.
        let mut rooms: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for user in &listed {
            for room in array(&call_bytes(con, &[b"PRESENCE.ROOMS", user])) {
                rooms.entry(bytes(&room)).or_default().insert(user.clone());
            }
        }
        for (room, members) in &rooms {
            let count = int(&call_bytes(con, &[b"PRESENCE.COUNT", b"SCOPE", room]));
            assert_eq!(count as usize, members.len(), "COUNT of room {room:?}");
            let paged = list_all(con, &[b"SCOPE", room], b"3");
            assert_eq!(&paged, members, "LIST of room {room:?}");
        }
        let count = int(&call_bytes(con, &[b"PRESENCE.COUNT"]));
        assert_eq!(count as usize, listed.len(), "COUNT");
        // LIST pages through exactly the same users.
        let paged = list_all(con, &[], b"7");
        assert_eq!(paged, listed, "LIST");
        let info: String = redis::cmd("INFO").arg("presence").query(con).unwrap();
        let gauge = |name: &str| -> usize {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("presence_{name}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap()
        };
        assert_eq!(gauge("devices_online"), indexed.len());
        assert_eq!(gauge("users_online"), users.len());
    }
}

/// Every user LIST gives (`scope`: `SCOPE room`, or nothing for everyone), page by page of
/// `limit`, each once.
fn list_all(con: &mut redis::Connection, scope: &[&[u8]], limit: &[u8]) -> BTreeSet<Vec<u8>> {
    let mut paged = BTreeSet::new();
    let mut cursor = b"0".to_vec();
    loop {
        let mut args: Vec<&[u8]> = vec![b"PRESENCE.LIST"];
        args.extend_from_slice(scope);
        args.extend([b"LIMIT".as_slice(), limit, b"CURSOR", &cursor]);
        let reply = array(&call_bytes(con, &args));
        for row in array(&reply[1]) {
            let user = bytes(&array(&row)[0]);
            assert!(
                paged.insert(user.clone()),
                "{user:?} listed twice ({scope:?})"
            );
        }
        cursor = bytes(&reply[0]);
        if cursor == b"0" {
            return paged;
        }
    }
}

/// Replays a batch one call at a time on a new connection and shows the first that fails.
fn first_failing(srv: &Server, commands: &[Vec<Vec<u8>>]) -> String {
    let mut con = srv.con();
    for args in commands {
        let mut cmd = redis::cmd(std::str::from_utf8(&args[0]).unwrap());
        for a in &args[1..] {
            cmd.arg(a.as_slice());
        }
        if let Err(e) = cmd.query::<Value>(&mut con) {
            if e.code().is_none() {
                let shown: Vec<String> = args
                    .iter()
                    .map(|a| String::from_utf8_lossy(&a[..a.len().min(80)]).into_owned())
                    .collect();
                return format!("{shown:?}: {e}");
            }
        }
    }
    "no single call fails".into()
}

fn call_bytes(con: &mut redis::Connection, args: &[&[u8]]) -> Value {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap()
}

#[test]
fn random_calls_never_crash_and_leave_consistent_keys() {
    let seed = fuzz_seed();
    let calls: usize = std::env::var("PRESENCE_FUZZ_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    eprintln!("fuzz seed {seed} ({calls} calls per server): PRESENCE_FUZZ_SEED={seed} replays it");
    on_each_server(
        &["timeout", "300", "sweep-interval", "10", "max-devices", "4"],
        |srv| {
            let mut rng = Rng(seed);
            let mut con = srv.con();
            let mut done = 0;
            while done < calls {
                let batch = 500.min(calls - done);
                let commands: Vec<Vec<Vec<u8>>> = (0..batch).map(|_| call(&mut rng)).collect();
                let mut packed = Vec::new();
                for args in &commands {
                    let mut cmd = redis::cmd(std::str::from_utf8(&args[0]).unwrap());
                    for a in &args[1..] {
                        cmd.arg(a.as_slice());
                    }
                    packed.extend(cmd.get_packed_command());
                }
                let replies =
                    match redis::ConnectionLike::req_packed_commands(&mut con, &packed, 0, batch) {
                        Ok(replies) => replies,
                        Err(e) => panic!(
                            "seed {seed}: {e} in the batch of calls {done}..{}: {}",
                            done + batch,
                            first_failing(srv, &commands)
                        ),
                    };
                assert_eq!(replies.len(), batch, "seed {seed}");
                for (reply, args) in replies.iter().zip(&commands) {
                    check_reply(reply, args);
                }
                done += batch;
            }
            let pong: String = redis::cmd("PING").query(&mut con).unwrap();
            assert_eq!(pong, "PONG", "seed {seed}: the server is gone");
            // Let every short-lived device (TTL under a second) pass its deadline and be swept, then
            // check the keys.
            let quiet_from = epoch_ms() + 1000;
            assert!(wait_until(Duration::from_secs(5), || epoch_ms() > quiet_from));
            let swept = wait_until(Duration::from_secs(10), || {
                int(&run(&mut con, &["PRESENCE.SWEEP", "LIMIT", "100000"]).unwrap()) == 0
            });
            assert!(swept, "seed {seed}: the sweep does not finish");
            check_consistency(&mut con, srv.is_external());
        },
    );
}
