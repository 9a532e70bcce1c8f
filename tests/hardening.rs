//! Data read back from the keyspace is untrusted: garbage written into the module's keys with
//! plain commands never takes the server down (commands, sweeps, DEBUG RELOAD, a replica's full
//! sync), and the module treats it as documented.

mod common;

use common::*;
use std::time::Duration;

/// The only key matching `pattern` (the tests that use it run on a fresh server with one user).
fn only_key(con: &mut redis::Connection, pattern: &str) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(pattern).query(con).unwrap();
    assert_eq!(keys.len(), 1, "keys matching {pattern}: {keys:?}");
    keys.into_iter().next().unwrap_or_default()
}

fn alive(con: &mut redis::Connection) -> bool {
    redis::cmd("PING").query::<String>(con).is_ok()
}

#[test]
fn a_due_member_with_an_overflowing_length_is_dropped_not_fatal() {
    on_each_server(&["sweep-interval", "20"], |srv| {
        if skip_on_external("reloads the server") {
            return;
        }
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", "alice", "phone"]).unwrap();
        let due = only_key(&mut con, "presence:due:*");
        for member in ["18446744073709551615:x", "99999999999999999999:x", ":::"] {
            call(&mut con, &[b"ZADD", &due, b"0", member.as_bytes()]).unwrap();
        }
        // The sweep meets the entries, drops them and goes on.
        assert!(wait_until(Duration::from_secs(10), || {
            let n: i64 = redis::cmd("ZCARD").arg(&due).query(&mut con).unwrap();
            n == 1
        }));
        assert!(alive(&mut con));
        // With a future score the entries survive until loading, which must cope too.
        call(
            &mut con,
            &[b"ZADD", &due, b"1e15", b"18446744073709551615:x"],
        )
        .unwrap();
        run(&mut con, &["DEBUG", "RELOAD"]).unwrap();
        assert!(alive(&mut con));
        let g = map(&run(&mut con, &["PRESENCE.GET", "alice"]).unwrap());
        assert_eq!(text(&g["status"]), "online");
        assert_eq!(info_field(&mut con, "panics"), 0);
    });
}

const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "{t}u4", "u5"];

/// A value that the module might read as a number, a list or an id, and often cannot.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    let now = epoch_ms();
    match rng.below(18) {
        0 => Vec::new(),
        1 => b"-1".to_vec(),
        2 => b"999999999999999999999".to_vec(),
        3 => i64::MAX.to_string().into_bytes(),
        4 => i64::MIN.to_string().into_bytes(),
        5 => format!("{now}:{}", rng.below(100_000)).into_bytes(),
        6 => format!("{}:-5", now).into_bytes(),
        7 => format!("{}:{}", i64::MAX, i64::MAX).into_bytes(),
        8 => format!("{now}:timeout:d{}", rng.below(3)).into_bytes(),
        9 => format!("{}:disconnect:", i64::MIN).into_bytes(),
        10 => [&b"18446744073709551615:"[..], b"x"].concat(),
        11 => vec![0xff, 0, b':', 0xfe],
        12 => b"away".to_vec(),
        13 => b"invisible".to_vec(),
        14 => (now + rng.below(10_000) as i64).to_string().into_bytes(),
        // A device field with an order (the third part) that is huge, or no number.
        15 => format!("{now}:1000:{}", u64::MAX).into_bytes(),
        16 => format!("{now}:1000:-1").into_bytes(),
        _ => (0..rng.below(40)).map(|_| rng.next() as u8).collect(),
    }
}

fn score(rng: &mut Rng) -> String {
    let now = epoch_ms();
    match rng.below(10) {
        0 => "-inf".into(),
        1 => "+inf".into(),
        2 => "1e300".into(),
        3 => "-1e300".into(),
        4 => "0".into(),
        5 => i64::MAX.to_string(),
        6 => "9.5e18".into(),
        7 => (now - rng.below(100_000) as i64).to_string(),
        _ => (now + rng.below(100_000) as i64).to_string(),
    }
}

/// One plain command that writes garbage into a key of the module.
fn vandalism(rng: &mut Rng, con: &mut redis::Connection) -> Vec<Vec<u8>> {
    let user = rng.pick(&USERS);
    // Users without braces: their keys are `presence:<prefix>{<user>}`.
    let key = |prefix: &str| {
        format!("presence:{prefix}{{{}}}", user.replace(['{', '}'], "")).into_bytes()
    };
    let slot_keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("presence:*:{*}*")
        .query(con)
        .unwrap_or_default();
    let slot_key = if slot_keys.is_empty() {
        b"presence:due:{0}".to_vec()
    } else {
        slot_keys[rng.below(slot_keys.len() as u64) as usize].clone()
    };
    let field = rng.pick(&[
        "since",
        "last_seen",
        "seq",
        "status",
        "manual",
        "message",
        "manual_until",
        "last_active",
        "leaving",
        "last_device",
        "dev:d0",
        "dev:d1",
        "meta:d0",
        "ctx:d0",
        "room:2:d0:s",
        "room:2:d1:r",
        "room:9:d0:s",
        "room:",
        "typing:d0",
        "typing:d1",
        "scope:s",
        "scope:",
        "dev:",
    ]);
    let member = match rng.below(4) {
        0 => format!("{}:{user}:d0", user.len()).into_bytes(),
        1 => user.as_bytes().to_vec(),
        _ => garbage(rng),
    };
    let b = |s: &str| s.as_bytes().to_vec();
    match rng.below(10) {
        0..=3 => vec![b("HSET"), key(""), b(field), garbage(rng)],
        4 | 5 => vec![b("ZADD"), slot_key, b(&score(rng)), member],
        6 => vec![
            b("HSET"),
            key("settings:"),
            b(rng.pick(&["online", "lastseen"])),
            garbage(rng),
        ],
        7 => vec![
            b("SET"),
            if rng.below(2) == 0 { key("") } else { slot_key },
            garbage(rng),
        ],
        8 => vec![b("PEXPIRE"), key(""), b(&rng.below(50).to_string())],
        _ => vec![b("DEL"), if rng.below(2) == 0 { key("") } else { slot_key }],
    }
}

/// A PRESENCE command on one of the users.
fn presence_call(rng: &mut Rng) -> Vec<Vec<u8>> {
    let user = rng.pick(&USERS).as_bytes().to_vec();
    let device = format!("d{}", rng.below(2)).into_bytes();
    let b = |s: &str| s.as_bytes().to_vec();
    match rng.below(24) {
        18 | 19 => vec![
            b("PRESENCE.JOIN"),
            user,
            device,
            b(rng.pick(&["s", "r"])),
            b("DATA"),
            b(r#"{"k":1}"#),
        ],
        20 => vec![b("PRESENCE.TYPING"), user, device, b(rng.pick(&["s", "r", "NONE"]))],
        21 => vec![b("PRESENCE.LEAVE"), user, device, b("r")],
        22 => vec![b("PRESENCE.TYPERS"), b(rng.pick(&["s", "r"]))],
        23 => vec![b("PRESENCE.ROOMS"), user, device],
        0 | 1 => vec![
            b("PRESENCE.ONLINE"),
            user,
            device,
            b("TTL"),
            b("200"),
            b("SCOPE"),
            b("s"),
        ],
        2 | 3 => vec![b("PRESENCE.HEARTBEAT"), user, device],
        4 => vec![b("PRESENCE.OFFLINE"), user, device],
        5 => vec![b("PRESENCE.GET"), user, b("VIEWER"), b("u1")],
        6 => vec![b("PRESENCE.BULK"), user],
        7 => vec![b("PRESENCE.DEVICES"), user],
        8 => vec![
            b("PRESENCE.STATUS"),
            user,
            b(rng.pick(&["busy", "auto", "invisible"])),
            b("FOR"),
            b("50"),
        ],
        9 => vec![b("PRESENCE.ACTIVITY"), user],
        10 => vec![b("PRESENCE.LIST"), b("LIMIT"), b("5")],
        11 => vec![b("PRESENCE.COUNT"), b("SCOPE"), b("s")],
        12 => vec![b("PRESENCE.SWEEP")],
        13 => vec![b("PRESENCE.FANOUT"), user, b("CONTACTS")],
        // An event payload from a client: one the module could have published, or garbage.
        14 => vec![
            b("PRESENCE.FANOUT"),
            user.clone(),
            b("EVENT"),
            match rng.below(2) {
                0 => format!(
                    r#"{{"user":"{}","status":"offline","prev":"online","reason":"timeout","device":"d0","devices":0,"last_seen":{},"ts":{},"seq":{}}}"#,
                    String::from_utf8_lossy(&user),
                    score(rng),
                    score(rng),
                    rng.next()
                )
                .into_bytes(),
                _ => garbage(rng),
            },
            b("VIEWERS"),
            b("u1"),
        ],
        15 => vec![b("PRESENCE.BULK"), user, b("VIEWER"), b("u1"), b("WITHDEVICE")],
        16 => vec![
            b("PRESENCE.LIST"),
            b("SCOPE"),
            b(rng.pick(&["s", "r"])),
            b("WITHSCOPES"),
            b("WITHDEVICES"),
        ],
        _ => vec![b("PRESENCE.CONTEXT"), user, device, b("c1")],
    }
}

fn send(con: &mut redis::Connection, args: &[Vec<u8>]) -> Result<redis::Value, String> {
    let mut cmd = redis::cmd(std::str::from_utf8(&args[0]).unwrap_or("PING"));
    for a in &args[1..] {
        cmd.arg(a.as_slice());
    }
    cmd.query(con).map_err(|e| error_text(&e))
}

#[test]
fn garbage_in_the_module_keys_never_takes_the_server_down() {
    let seed = fuzz_seed();
    let rounds: usize = std::env::var("PRESENCE_KEYSPACE_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!("keyspace fuzz seed {seed} (PRESENCE_FUZZ_SEED={seed} replays it)");
    on_each_server(
        &["sweep-interval", "10", "grace", "30", "away-after", "40"],
        |srv| {
            if skip_on_external("writes garbage into the module's keys and reloads") {
                return;
            }
            let mut con = srv.con();
            // A replica's full sync starts at once, not after the diskless delay.
            run(
                &mut con,
                &["CONFIG", "SET", "repl-diskless-sync-delay", "0"],
            )
            .unwrap();
            let replica = Server::start_replica_of(srv);
            let mut rng = Rng(seed);
            let mut history: Vec<Vec<Vec<u8>>> = Vec::new();
            for round in 0..rounds {
                for _ in 0..500 {
                    let args = if rng.below(3) == 0 {
                        vandalism(&mut rng, &mut con)
                    } else {
                        presence_call(&mut rng)
                    };
                    let reply = send(&mut con, &args);
                    history.push(args.clone());
                    if let Err(e) = &reply {
                        assert!(
                            !e.contains("internal error") && !e.contains("connection"),
                            "{:?} -> {e} (seed {seed}); log: {}",
                            String::from_utf8_lossy(&args.concat()),
                            srv.log()
                                .lines()
                                .filter(|l| l.contains("internal error"))
                                .collect::<Vec<_>>()
                                .join("\n")
                        );
                    }
                    assert!(
                        alive(&mut con),
                        "server down after {history:?} (seed {seed})"
                    );
                }
                // Let the sweep meet what was written, then reload and resync the replica.
                std::thread::sleep(Duration::from_millis(60));
                if round % 2 == 0 {
                    run(&mut con, &["DEBUG", "RELOAD"]).unwrap();
                } else {
                    let mut rcon = replica.con();
                    run(&mut rcon, &["REPLICAOF", "NO", "ONE"]).unwrap();
                    let port = srv.port.to_string();
                    run(&mut rcon, &["REPLICAOF", "127.0.0.1", &port]).unwrap();
                    assert!(wait_until(Duration::from_secs(10), || {
                        redis::cmd("INFO")
                            .arg("replication")
                            .query::<String>(&mut rcon)
                            .is_ok_and(|i| i.contains("master_link_status:up"))
                    }));
                }
                assert!(alive(&mut con), "seed {seed}");
                assert!(alive(&mut replica.con()), "replica down (seed {seed})");
            }
            assert_eq!(
                info_field(&mut con, "panics"),
                0,
                "seed {seed}: see the log"
            );
            assert_eq!(info_field(&mut replica.con(), "panics"), 0, "seed {seed}");
        },
    );
}

#[test]
fn a_writable_replica_refuses_presence_writes() {
    on_each_server(&[], |master| {
        if skip_on_external("needs a replica of its own") {
            return;
        }
        let replica = Server::start_replica_with(master, &["--replica-read-only", "no"]);
        let mut con = replica.con();
        let events = Subscriber::new(&replica, "SUBSCRIBE", &[b"presence:events"]);
        for args in [
            &["PRESENCE.ONLINE", "w", "d"][..],
            &["PRESENCE.HEARTBEAT", "w", "d"],
            &["PRESENCE.OFFLINE", "w", "d"],
            &["PRESENCE.STATUS", "w", "busy"],
            &["PRESENCE.ACTIVITY", "w"],
            &["PRESENCE.CONTEXT", "w", "d", "c"],
            &["PRESENCE.PRIVACY", "w", "ONLINE", "nobody"],
            &["PRESENCE.CONTACTS", "w", "ADD", "v"],
        ] {
            let e = run(&mut con, args).expect_err("a write on a replica");
            assert!(e.starts_with("READONLY"), "{args:?}: {e}");
        }
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("presence:*")
            .query(&mut con)
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        // Reads work as usual.
        let g = map(&run(&mut con, &["PRESENCE.GET", "w"]).unwrap());
        assert_eq!(text(&g["status"]), "offline");
        events.assert_quiet(Duration::from_millis(200));
    });
}

fn count(con: &mut redis::Connection, scope: Option<&str>) -> i64 {
    let mut args = vec!["PRESENCE.COUNT"];
    if let Some(scope) = scope {
        args.extend(["SCOPE", scope]);
    }
    int(&run(con, &args).unwrap())
}

/// Every user LIST returns, paging to the end.
fn listed(con: &mut redis::Connection, scope: Option<&str>) -> Vec<String> {
    let mut users = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let mut args = vec!["PRESENCE.LIST", "LIMIT", "1000"];
        if let Some(scope) = scope {
            args.extend(["SCOPE", scope]);
        }
        if cursor != "0" {
            args.extend(["CURSOR", cursor.as_str()]);
        }
        let reply = array(&run(con, &args).unwrap());
        users.extend(array(&reply[1]).iter().map(|row| text(&array(row)[0])));
        cursor = text(&reply[0]);
        if cursor == "0" {
            return users;
        }
    }
}

#[test]
fn a_deleted_record_leaves_no_ghost_and_its_device_is_announced_offline() {
    on_each_server(&["sweep-interval", "10"], |srv| {
        if skip_on_external("reads the node's gauges") {
            return;
        }
        let mut con = srv.con();
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        run(
            &mut con,
            &["PRESENCE.ONLINE", "u1", "d", "TTL", "400", "SCOPE", "room"],
        )
        .unwrap();
        let online = global.take(1, Duration::from_secs(5));
        assert_eq!(online[0].str("status"), "online");
        run(&mut con, &["DEL", "presence:{u1}"]).unwrap();
        // Out of every listing, and out of the gauges, at once or within a reconciliation pass.
        assert!(wait_until(Duration::from_secs(10), || {
            count(&mut con, None) == 0
                && count(&mut con, Some("room")) == 0
                && info_field(&mut con, "users_online") == 0
                && info_field(&mut con, "devices_online") == 0
        }));
        assert!(listed(&mut con, None).is_empty());
        // The user is announced offline (the record is gone: reads say so too), named by their
        // device, with a seq above the one before; and only once (not again at the deadline).
        let got = global.take(1, Duration::from_secs(5));
        assert_eq!(
            got.len(),
            1,
            "no offline event for a device whose record vanished"
        );
        assert_eq!(
            (
                got[0].str("user"),
                got[0].str("status"),
                got[0].str("reason"),
                got[0].str("device")
            ),
            ("u1", "offline", "timeout", "d")
        );
        assert!(got[0].int("seq") > online[0].int("seq"));
        // A deleted record stays deleted.
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("presence:*")
            .query(&mut con)
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        global.assert_quiet(Duration::from_millis(300));
    });
}

#[test]
fn a_listing_key_that_expired_is_rebuilt_from_the_records() {
    on_each_server(&["sweep-interval", "10"], |srv| {
        if skip_on_external("expires a shared listing key") {
            return;
        }
        let mut con = srv.con();
        // Fifty users sharing a hash tag share their slot's listing key.
        let users: Vec<String> = (0..50).map(|i| format!("{{tag}}u{i}")).collect();
        for user in &users {
            run(&mut con, &["PRESENCE.ONLINE", user, "d"]).unwrap();
        }
        let listing = only_key(&mut con, "presence:online:*");
        call(&mut con, &[b"PEXPIRE", &listing, b"50"]).unwrap();
        // COUNT follows the key when it goes; then the reconciliation puts everyone back.
        assert!(wait_until(Duration::from_secs(10), || {
            info_field(&mut con, "repairs") >= 50
                && count(&mut con, None) == 50
                && listed(&mut con, None).len() == 50
        }));
    });
}

#[test]
fn garbage_members_in_indexes_and_listings_are_removed() {
    on_each_server(&["sweep-interval", "10"], |srv| {
        if skip_on_external("writes into shared index keys") {
            return;
        }
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", "alice", "d"]).unwrap();
        let listing = only_key(&mut con, "presence:online:*");
        let due = only_key(&mut con, "presence:due:*");
        let now = epoch_ms().to_string();
        call(&mut con, &[b"ZADD", &listing, now.as_bytes(), b"nobody"]).unwrap();
        call(
            &mut con,
            &[b"ZADD", &listing, now.as_bytes(), b"\xff\x00garbage"],
        )
        .unwrap();
        call(&mut con, &[b"ZADD", &due, b"1e300", b"5:alice:d"]).unwrap();
        call(&mut con, &[b"ZADD", &due, b"+inf", b"not a member"]).unwrap();
        assert_eq!(count(&mut con, None), 3);
        assert!(wait_until(Duration::from_secs(10), || {
            count(&mut con, None) == 0 || count(&mut con, None) == 1
        }));
        // Only alice's entries are left, and her impossible deadline was judged: her device
        // timed out (a heartbeat sets no deadline 1e300 ms ahead).
        assert!(wait_until(Duration::from_secs(10), || {
            let due_members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                .arg(&due)
                .arg(0)
                .arg(-1)
                .query(&mut con)
                .unwrap();
            due_members.is_empty()
        }));
        let g = map(&run(&mut con, &["PRESENCE.GET", "alice"]).unwrap());
        assert_eq!(text(&g["status"]), "offline");
        assert!(wait_until(Duration::from_secs(10), || count(
            &mut con, None
        ) == 0));
        let left: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(&listing)
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn under_eviction_counts_agree_and_no_device_is_announced_twice() {
    on_each_server(&["sweep-interval", "20", "timeout", "1500"], |srv| {
        if skip_on_external("sets maxmemory and evicts") {
            return;
        }
        const USERS: usize = 3000;
        let mut con = srv.con();
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let users: Vec<String> = (0..USERS).map(|i| format!("ev{i}")).collect();
        let mut pipe = redis::pipe();
        for user in &users {
            pipe.cmd("PRESENCE.ONLINE")
                .arg(user)
                .arg("d")
                .arg("SCOPE")
                .arg("zone")
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        // Memory runs out while half of the users heartbeat: the server evicts keys of every kind.
        let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
        let used: i64 = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        run(
            &mut con,
            &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
        )
        .unwrap();
        run(
            &mut con,
            &["CONFIG", "SET", "maxmemory", &(used + 300_000).to_string()],
        )
        .unwrap();
        let filler = "x".repeat(1000);
        for round in 0..4 {
            let mut pipe = redis::pipe();
            for i in 0..500 {
                pipe.cmd("SET")
                    .arg(format!("fill:{round}:{i}"))
                    .arg(&filler)
                    .ignore();
            }
            for user in users.iter().step_by(2) {
                pipe.cmd("PRESENCE.HEARTBEAT").arg(user).arg("d").ignore();
            }
            // Writes may be refused for memory meanwhile: what matters is what the keys become.
            let _: redis::RedisResult<()> = pipe.query(&mut con);
        }
        let evicted = {
            let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("evicted_keys:"))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap()
        };
        assert!(evicted > 1000, "the test must evict: {evicted}");
        assert!(
            srv.log().contains("maxmemory-policy is allkeys-lru"),
            "no warning in the log"
        );
        run(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
        // A user of whom nothing is left (record, index entries and listing entries all evicted)
        // cannot be announced; every other one must be.
        let mut traceable: std::collections::BTreeSet<String> = Default::default();
        let index_keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("presence:*:{*")
            .query(&mut con)
            .unwrap();
        for key in &index_keys {
            let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query(&mut con)
                .unwrap();
            for member in members {
                let member = String::from_utf8_lossy(&member).into_owned();
                let user = match member.split(':').collect::<Vec<_>>()[..] {
                    [_, user, _] => user.to_string(),
                    _ => member,
                };
                traceable.insert(user);
            }
        }
        let record_names: Vec<String> = redis::cmd("KEYS")
            .arg("presence:{*")
            .query(&mut con)
            .unwrap();
        traceable.extend(record_names.iter().map(|r| {
            r.trim_start_matches("presence:{")
                .trim_end_matches('}')
                .to_string()
        }));
        // Every deadline passes; then two reconciliation passes run.
        std::thread::sleep(Duration::from_millis(1600));
        let passes = info_field(&mut con, "reconcile_passes");
        assert!(wait_until(Duration::from_secs(60), || {
            info_field(&mut con, "reconcile_passes") >= passes + 2
        }));
        assert_eq!(count(&mut con, None), 0);
        assert_eq!(count(&mut con, Some("zone")), 0);
        assert!(listed(&mut con, None).is_empty());
        assert_eq!(info_field(&mut con, "users_online"), 0);
        assert_eq!(info_field(&mut con, "devices_online"), 0);
        let records: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("presence:{*")
            .query(&mut con)
            .unwrap();
        for record in &records {
            let fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(record).query(&mut con).unwrap();
            assert!(
                !fields.iter().any(|f| f.starts_with(b"dev:")),
                "{record:?} {fields:?}"
            );
            let ttl: i64 = redis::cmd("PTTL").arg(record).query(&mut con).unwrap();
            assert!(ttl > 0, "{record:?} kept without a TTL");
        }
        // Heartbeats that met an evicted record or index entry made users flap while memory ran
        // out; once everything stopped, each user's last event is offline, no offline event is
        // repeated, and each user's seq only grows.
        let events = global.take(4 * USERS, Duration::from_secs(3));
        let mut seen: std::collections::BTreeMap<String, Vec<(String, i64)>> = Default::default();
        for m in &events {
            seen.entry(m.str("user").to_string())
                .or_default()
                .push((m.str("status").to_string(), m.int("seq")));
        }
        let mut left_online = Vec::new();
        for (user, got) in &seen {
            assert!(got.windows(2).all(|w| w[1].1 > w[0].1), "{user}: {got:?}");
            assert!(
                got.windows(2)
                    .all(|w| !(w[0].0 == "offline" && w[1].0 == "offline")),
                "{user}: announced offline twice: {got:?}"
            );
            if traceable.contains(user) && got.last().is_some_and(|(status, _)| status != "offline")
            {
                left_online.push(user.clone());
            }
        }
        let offline = seen
            .values()
            .filter(|got| got.last().is_some_and(|(status, _)| status == "offline"))
            .count();
        assert!(
            left_online.is_empty(),
            "{} users never announced offline: {:?}",
            left_online.len(),
            &left_online[..left_online.len().min(5)]
        );
        eprintln!(
            "{:?}: {evicted} keys evicted, {} of {USERS} users traceable, {offline} announced offline",
            srv.kind,
            traceable.len()
        );
    });
}

fn repl_offset(con: &mut redis::Connection, field: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg("replication").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn a_replica_and_an_aof_reload_apply_users_of_one_hash_tag_in_linear_time() {
    if skip_on_external("needs a replica and a restart of its own") {
        return;
    }
    for kind in kinds() {
        const USERS: usize = 10_000;
        let config = ["--appendonly", "yes", "--appendfsync", "always"];
        let master = Server::start(kind, &[], &config);
        let mut con = master.con();
        let replica = Server::start_replica_of(&master);
        let mut rcon = replica.con();
        // Users sharing a hash tag (as the README suggests for BULK in a cluster) share one
        // listing key per scope and one due index.
        let started = std::time::Instant::now();
        let mut pipe = redis::pipe();
        for i in 0..USERS {
            pipe.cmd("PRESENCE.ONLINE")
                .arg(format!("{{team}}u{i}"))
                .arg("d")
                .arg("SCOPE")
                .arg("team")
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        let master_took = started.elapsed();
        let target = repl_offset(&mut con, "master_repl_offset");
        assert!(wait_until(Duration::from_secs(60), || {
            repl_offset(&mut rcon, "slave_repl_offset") >= target
        }));
        let replica_took = started.elapsed();
        assert_eq!(count(&mut rcon, None), USERS as i64);
        assert_eq!(count(&mut rcon, Some("team")), USERS as i64);
        eprintln!("{kind:?}: master {master_took:?}, replica caught up after {replica_took:?}");
        assert!(
            replica_took < master_took + Duration::from_secs(1),
            "{kind:?}: the replica took {replica_took:?} to apply what the master did in \
             {master_took:?}"
        );
        drop(rcon);
        drop(replica);
        // The AOF holds the same stream: a restart replays it as fast.
        let started = std::time::Instant::now();
        let master = master.restart(&[], &config);
        let reload_took = started.elapsed();
        let mut con = master.con();
        assert_eq!(count(&mut con, Some("team")), USERS as i64);
        eprintln!("{kind:?}: AOF restart {reload_took:?}");
        assert!(
            reload_took < Duration::from_secs(3),
            "{kind:?}: AOF restart took {reload_took:?}"
        );
    }
}

#[test]
fn a_listing_key_of_another_type_refuses_writes_with_wrongtype() {
    on_each_server(&[], |srv| {
        if skip_on_external("overwrites a shared listing key") {
            return;
        }
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", "wt", "d", "SCOPE", "room"]).unwrap();
        let everyone = only_key(&mut con, "presence:online:*");
        run(&mut con, &["PRESENCE.OFFLINE", "wt", "d"]).unwrap();
        call(&mut con, &[b"SET", &everyone, b"not a listing"]).unwrap();
        let before = snapshot(&mut con);
        let e = run(&mut con, &["PRESENCE.ONLINE", "wt", "d"]).unwrap_err();
        assert!(e.starts_with("WRONGTYPE"), "{e}");
        assert_eq!(
            snapshot(&mut con),
            before,
            "a refused write changed something"
        );
        call(&mut con, &[b"DEL", &everyone]).unwrap();
        // Rooms have no keys of their own (they are listed in memory): with the listing back,
        // the user comes online in the room.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", "wt", "d", "SCOPE", "room"]).unwrap()),
            1
        );
        let room = [b"PRESENCE.COUNT".as_slice(), b"SCOPE", b"room"];
        assert_eq!(int(&call(&mut con, &room).unwrap()), 1);
    });
}

#[test]
fn sweep_limit_is_exact_even_inside_one_user() {
    on_each_server(&["sweep-interval", "60000"], |srv| {
        if skip_on_external("other devices may be due") {
            return;
        }
        let mut con = srv.con();
        for device in ["a", "b", "c"] {
            run(
                &mut con,
                &["PRESENCE.ONLINE", "three", device, "TTL", "100"],
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(sweep_until_some(&mut con, "2"), 2);
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg("presence:{three}")
            .query(&mut con)
            .unwrap();
        assert_eq!(
            fields.iter().filter(|f| f.starts_with("dev:")).count(),
            1,
            "{fields:?}"
        );
        assert_eq!(sweep_until_some(&mut con, "2"), 1);
    });
}

/// PRESENCE.SWEEP LIMIT `limit` until a call removes something (each call stops at 10 ms, which
/// after a start may pass before it meets a device: the sweep does not yet know which slots are
/// empty); what that call removed.
fn sweep_until_some(con: &mut redis::Connection, limit: &str) -> i64 {
    for _ in 0..1000 {
        let removed = int(&run(con, &["PRESENCE.SWEEP", "LIMIT", limit]).unwrap());
        if removed > 0 {
            return removed;
        }
    }
    0
}

#[test]
fn sweep_stops_at_its_time_cap_whatever_its_limit() {
    on_each_server(&["sweep-interval", "60000", "timeout", "100"], |srv| {
        if skip_on_external("builds a backlog of its own") {
            return;
        }
        let mut con = srv.con();
        let users: Vec<String> = (0..20_000).map(|i| format!("cap{i}")).collect();
        online(&mut con, &users);
        std::thread::sleep(Duration::from_millis(150));
        let started = std::time::Instant::now();
        let first = int(&run(&mut con, &["PRESENCE.SWEEP", "LIMIT", "100000000"]).unwrap());
        let took = started.elapsed();
        assert!(first < 20_000, "one call removed them all");
        assert!(took < Duration::from_millis(200), "{took:?}");
        let mut removed = first;
        while removed < 20_000 {
            removed += sweep_until_some(&mut con, "100000000");
        }
        assert_eq!(removed, 20_000);
    });
}

fn online(con: &mut redis::Connection, users: &[String]) {
    let mut pipe = redis::pipe();
    for user in users {
        pipe.cmd("PRESENCE.ONLINE").arg(user).arg("d").ignore();
    }
    let _: () = pipe.query(con).unwrap();
}

#[test]
fn ids_that_are_not_utf8_stay_distinct_in_events() {
    on_each_server(&[], |srv| {
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = srv.con();
        let prefix = unique("bad");
        let id = |tail: &[u8]| [prefix.as_bytes(), tail].concat();
        let ids = [id(b"\xff"), id(b"\xfe"), id(b"\xef\xbf\xbd")];
        for id in &ids {
            call(&mut con, &[b"PRESENCE.ONLINE", id, b"d\xff"]).unwrap();
        }
        let got = global.take(3, Duration::from_secs(5));
        assert_eq!(got.len(), 3);
        let exact: Vec<(&str, &str)> = got
            .iter()
            .map(|m| (m.str("user_b64"), m.str("device_b64")))
            .collect();
        let coded = |id: &[u8]| base64(id);
        assert_eq!(
            exact,
            [
                (coded(&ids[0]).as_str(), "ZP8="),
                (coded(&ids[1]).as_str(), "ZP8="),
                ("", "ZP8=")
            ],
            "the third id is UTF-8 (U+FFFD itself): no user_b64"
        );
        assert_eq!(got[2].str("user"), format!("{prefix}\u{fffd}"));
        for id in &ids {
            call(&mut con, &[b"PRESENCE.OFFLINE", id, b"d\xff"]).unwrap();
        }
    });
}

/// Standard base64 (RFC 4648, padded), written again here: the test compares the module's.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn the_tests_base64_is_the_rfcs() {
    assert_eq!(base64(b"foob"), "Zm9vYg==");
    assert_eq!(base64(b"bad\xff"), "YmFk/w==");
}
