//! Redis Cluster: local clusters of 3 masters with a replica each, started by `scripts/cluster.sh`
//! with the freshly built module, on Redis 7.0, Redis 7.2 and Valkey 9.1. Commands through a cluster
//! client, multi-user reads merged per slot and per node, sharded events, resharding (and Valkey's
//! atomic slot migration) and failover.

mod common;

use common::cluster::*;
use common::*;
use redis::{Connection, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn single_user_commands_route_to_the_owner_and_multi_user_reads_merge() {
    on_each_cluster(&["away-after", "0"], |cluster| {
        let mut con = cluster.client();
        let users: Vec<String> = (0..24).map(|i| format!("user:{i}")).collect();
        for user in &users {
            q(
                &mut con,
                &["PRESENCE.ONLINE", user, "phone", "SCOPE", "team"],
            )
            .unwrap();
            // Distinct activity times make the merged order unambiguous.
            let active = int(&map(&q(&mut con, &["PRESENCE.GET", user]).unwrap())["last_active"]);
            assert!(wait_until(WAIT, || epoch_ms() > active));
        }
        for user in &users {
            let slot = int(&q(&mut con, &["CLUSTER", "KEYSLOT", user]).unwrap());
            assert_eq!(slot, i64::from(keys::slot(user.as_bytes())), "{user}");
        }
        // The users are spread over every master, and each user's keys live on its owner only.
        let masters = cluster.masters();
        assert_eq!(masters.len(), 3);
        let mut per_master: BTreeMap<u16, usize> = BTreeMap::new();
        for user in &users {
            let owner = cluster.owner(keys::slot(user.as_bytes()));
            *per_master.entry(owner).or_default() += 1;
            let mut node = cluster.con(owner);
            let key = format!("presence:{{{user}}}");
            assert_eq!(q(&mut node, &["EXISTS", &key]).unwrap(), Value::Int(1));
        }
        assert_eq!(per_master.len(), 3, "{per_master:?}");
        // Every single-user command works through the cluster client, unchanged.
        let u = users[0].as_str();
        assert_eq!(
            int(&q(&mut con, &["PRESENCE.HEARTBEAT", u, "phone"]).unwrap()),
            1
        );
        q(&mut con, &["PRESENCE.STATUS", u, "busy"]).unwrap();
        q(&mut con, &["PRESENCE.CONTEXT", u, "phone", "chat:1"]).unwrap();
        assert_eq!(
            int(&q(&mut con, &["PRESENCE.INCONTEXT", u, "chat:1"]).unwrap()),
            1
        );
        assert_eq!(
            array(&q(&mut con, &["PRESENCE.DEVICES", u]).unwrap()).len(),
            1
        );
        q(&mut con, &["PRESENCE.CONTACTS", u, "ADD", "user:1"]).unwrap();
        q(&mut con, &["PRESENCE.PRIVACY", u, "ONLINE", "contacts"]).unwrap();
        let seen = map(&q(&mut con, &["PRESENCE.GET", u, "VIEWER", "user:1"]).unwrap());
        assert_eq!(text(&seen["status"]), "busy");

        // BULK over several slots is refused as MGET would be; one BULK per slot works.
        let e = q(&mut con, &["PRESENCE.BULK", "user:0", "user:1"]).unwrap_err();
        assert!(e.to_uppercase().contains("CROSSSLOT"), "{e}");
        let rows = bulk_anywhere(&mut con, &users);
        for (user, row) in users.iter().zip(&rows) {
            assert_eq!(&text(&row[0]), user);
        }
        assert_eq!(text(&rows[0][1]), "busy");
        assert!(rows[1..].iter().all(|r| text(&r[1]) == "online"));
        // Users who share a hash tag share a slot: one BULK, one node.
        for user in ["{org:7}ann", "{org:7}bob"] {
            q(&mut con, &["PRESENCE.ONLINE", user, "web"]).unwrap();
        }
        let both = array(&q(&mut con, &["PRESENCE.BULK", "{org:7}ann", "{org:7}bob"]).unwrap());
        assert_eq!(both.len(), 2);

        // COUNT sums over the masters; LIST merges their pages by last activity.
        assert_eq!(count_everywhere(cluster, Some("team")), 24);
        assert_eq!(count_everywhere(cluster, None), 26);
        let merged: Vec<String> = list_everywhere(cluster, Some("team"))
            .into_iter()
            .map(|(user, _)| user)
            .collect();
        // Heartbeats, STATUS and CONTEXT are not activity: the order is that of connection.
        let mut newest_first = users.clone();
        newest_first.reverse();
        assert_eq!(merged, newest_first);

        // redis-py's cluster client, as an application would use it, sends BULK with VIEWER to
        // the users' master: no node replies MOVED.
        let script = root().join("tests/python/bulk_routing.py");
        let output = std::process::Command::new("python3")
            .arg(&script)
            .arg(cluster.base.to_string())
            .env("PYTHONPATH", root().join(".deps/python"))
            .output()
            .expect("python3");
        assert!(
            output.status.success(),
            "{:?}: {}{} (scripts/deps.sh --test installs redis-py)",
            cluster.kind,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

#[test]
fn per_user_events_come_from_the_owner_and_the_global_channel_reaches_every_node() {
    on_each_cluster(&[], |cluster| {
        let user = "eve";
        let owner = cluster.owner(keys::slot(user.as_bytes()));
        let other = cluster
            .masters()
            .into_iter()
            .map(|(port, _)| port)
            .find(|&p| p != owner)
            .unwrap();
        let channel = format!("presence:{{{user}}}");
        let mut own = Subscriber::on(cluster.con(owner), "SSUBSCRIBE", &[channel.as_bytes()]);
        let mut global = Subscriber::on(cluster.con(other), "SUBSCRIBE", &[b"presence:events"]);
        // A sharded channel belongs to its slot's owner.
        let mut elsewhere = cluster.con(other);
        let e = q(&mut elsewhere, &["SPUBLISH", &channel, "x"]).unwrap_err();
        assert!(e.to_uppercase().contains("MOVED"), "{e}");

        let mut con = cluster.client();
        q(&mut con, &["PRESENCE.ONLINE", user, "phone"]).unwrap();
        q(&mut con, &["PRESENCE.OFFLINE", user, "phone"]).unwrap();
        for got in [own.take(2, WAIT), global.take(2, WAIT)] {
            let seen: Vec<(&str, i64)> = got
                .iter()
                .map(|m| (m.str("status"), m.int("seq")))
                .collect();
            assert_eq!(seen.len(), 2, "{seen:?}");
            assert_eq!((seen[0].0, seen[1].0), ("online", "offline"));
            assert_eq!(seen[1].1, seen[0].1 + 1, "consecutive seq");
            assert!(got.iter().all(|m| m.str("user") == user));
        }
    });
}

#[test]
fn a_rooms_members_live_on_every_master_and_its_channel_reaches_any_node() {
    on_each_cluster(&["away-after", "0"], |cluster| {
        let masters: Vec<u16> = cluster.masters().into_iter().map(|(p, _)| p).collect();
        // A subscriber on one node hears the room's members from every master.
        let mut hall = Subscriber::on(
            cluster.con(masters[0]),
            "SUBSCRIBE",
            &[b"presence:room:hall"],
        );
        let mut con = cluster.client();
        let users: Vec<String> = (0..24).map(|i| format!("member:{i}")).collect();
        for (i, user) in users.iter().enumerate() {
            q(&mut con, &["PRESENCE.ONLINE", user, "phone"]).unwrap();
            let data = format!(r#"{{"seat":{i}}}"#);
            q(
                &mut con,
                &["PRESENCE.JOIN", user, "phone", "hall", "DATA", &data],
            )
            .unwrap();
        }
        let owners: std::collections::BTreeSet<u16> = users
            .iter()
            .map(|u| cluster.owner(keys::slot(u.as_bytes())))
            .collect();
        assert_eq!(owners.len(), 3, "the members live on every master");
        let joins = hall.take(24, WAIT);
        let mut joined: Vec<String> = joins.iter().map(|m| m.str("user").to_owned()).collect();
        joined.sort();
        let mut expected = users.clone();
        expected.sort();
        assert_eq!(joined, expected);
        assert!(joins
            .iter()
            .all(|m| m.str("event") == "join" && m.str("room") == "hall"));
        // Each master lists and counts its own members; together, the whole room.
        assert_eq!(count_everywhere(cluster, Some("hall")), 24);
        let mut listed: Vec<String> = list_everywhere(cluster, Some("hall"))
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        listed.sort();
        assert_eq!(listed, expected);
        // Single-user room commands go to the owner through the cluster client.
        q(&mut con, &["PRESENCE.TYPING", &users[0], "phone", "hall"]).unwrap();
        q(&mut con, &["PRESENCE.TYPING", &users[1], "phone", "hall"]).unwrap();
        let mut typers = Vec::new();
        for &port in &masters {
            let reply = q(&mut cluster.con(port), &["PRESENCE.TYPERS", "hall"]).unwrap();
            typers.extend(array(&reply).iter().map(|pair| text(&array(pair)[0])));
        }
        typers.sort();
        assert_eq!(typers, vec![users[0].clone(), users[1].clone()]);
        let rooms = q(&mut con, &["PRESENCE.ROOMS", &users[2], "phone"]).unwrap();
        assert_eq!(text(&array(&array(&rooms)[0])[1]), r#"{"seat":2}"#);
        q(&mut con, &["PRESENCE.LEAVE", &users[2], "phone", "hall"]).unwrap();
        assert_eq!(count_everywhere(cluster, Some("hall")), 23);
        let leave = hall.take(3, WAIT);
        assert_eq!(
            leave.last().map(|m| (m.str("event"), m.str("user"))),
            Some(("leave", users[2].as_str()))
        );
    });
}

/// Heartbeats every device of `users` through the cluster client until `stop`, counting replies
/// that were not 1 (a device the node did not know) and errors that lasted.
fn heartbeat_until(
    cluster: &Cluster,
    users: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    let mut con = cluster.client();
    std::thread::spawn(move || {
        let (mut unknown, mut errors) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            for user in &users {
                match q(&mut con, &["PRESENCE.HEARTBEAT", user, "d"]) {
                    Ok(Value::Int(1)) => {}
                    Ok(_) => unknown += 1,
                    Err(e) => errors.push(e),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (unknown, errors)
    })
}

#[test]
fn resharding_moves_presence_timeouts_and_events_to_the_new_owner() {
    on_each_cluster(&["away-after", "0", "sweep-interval", "20"], |cluster| {
        let slot = keys::slot(b"mover0");
        let users = users_in_slot("mover", slot, 8);
        let mut con = cluster.client();
        for user in &users {
            q(
                &mut con,
                &[
                    "PRESENCE.ONLINE",
                    user,
                    "d",
                    "TTL",
                    "3000",
                    "SCOPE",
                    "moving",
                ],
            )
            .unwrap();
        }
        let from = cluster.owner(slot);
        let connect_seq = stored_seq(
            &mut cluster.con(from),
            &format!("presence:{{{}}}", users[0]),
        );
        let to = cluster
            .masters()
            .into_iter()
            .map(|(port, _)| port)
            .find(|&p| p != from)
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let beating = heartbeat_until(cluster, users[1..].to_vec(), stop.clone());
        std::thread::sleep(Duration::from_millis(300));
        let moved = cluster.move_slot(slot, to);
        assert!(
            moved.contains(&format!("moved from {from} to {to}")),
            "{moved}"
        );
        assert_eq!(cluster.owner(slot), to);

        // Nothing is left behind; the new owner holds every key, listing included.
        let mut old = cluster.con(from);
        let mut new = cluster.con(to);
        let keys_in = |con: &mut Connection| {
            int(&q(con, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]).unwrap())
        };
        assert_eq!(keys_in(&mut old), 0);
        // The records, the due index and the listing of everyone (rooms have no keys).
        assert_eq!(keys_in(&mut new), 8 + 2);
        assert_eq!(
            int(&q(&mut old, &["PRESENCE.COUNT", "SCOPE", "moving"]).unwrap()),
            0
        );
        assert_eq!(
            int(&q(&mut new, &["PRESENCE.COUNT", "SCOPE", "moving"]).unwrap()),
            8
        );

        // users[0] stopped heartbeating before the move: the new owner's sweep announces its
        // timeout, on its own sharded channel and nowhere twice.
        let channel = format!("presence:{{{}}}", users[0]);
        let mut events = Subscriber::on(cluster.con(to), "SSUBSCRIBE", &[channel.as_bytes()]);
        let got = events.take(1, WAIT);
        assert_eq!(
            got.len(),
            1,
            "{:?}: no timeout event from the new owner",
            cluster.kind
        );
        assert_eq!(
            (
                got[0].str("status"),
                got[0].str("reason"),
                got[0].int("seq")
            ),
            ("offline", "timeout", connect_seq + 1)
        );
        // Within a second of the deadline: the restored index told the new owner's sweep to look
        // at the slot at once (its periodic re-reading of every slot takes longer).
        let late = got[0].received - got[0].int("ts");
        assert!(late < 1000, "{:?}: announced {late} ms late", cluster.kind);
        assert_eq!(
            int(&q(&mut new, &["PRESENCE.COUNT", "SCOPE", "moving"]).unwrap()),
            7
        );

        // The others kept heartbeating through the move: never lost, never re-registered.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let (unknown, errors) = beating.join().unwrap();
        assert_eq!(
            unknown, 0,
            "{:?}: heartbeats that found no device",
            cluster.kind
        );
        assert!(errors.is_empty(), "{:?}: {errors:?}", cluster.kind);
        for row in bulk_anywhere(&mut con, &users[1..]) {
            assert_eq!(text(&row[1]), "online");
        }
        // And they time out on the new owner once they stop.
        assert!(wait_until(WAIT, || int(&q(
            &mut new,
            &["PRESENCE.COUNT", "SCOPE", "moving"]
        )
        .unwrap())
            == 0));
    });
}

#[test]
fn after_a_failover_the_new_master_keeps_presence_and_sweeps_without_repeating_seq() {
    on_each_cluster(&["away-after", "0", "sweep-interval", "20"], |cluster| {
        let victim = cluster.masters()[0].0;
        let survivor = cluster.masters()[1].0;
        // Users of the master about to fail: some keep heartbeating, some stop.
        let on_victim: Vec<String> = (0..)
            .map(|i| format!("fo:{i}"))
            .filter(|u| cluster.owner(keys::slot(u.as_bytes())) == victim)
            .take(10)
            .collect();
        let (staying, leaving) = on_victim.split_at(5);
        let mut global = Subscriber::on(cluster.con(survivor), "SUBSCRIBE", &[b"presence:events"]);
        let mut con = cluster.client();
        // Heartbeats cannot reach the slots while the failover lasts (seconds): the staying
        // devices have a TTL that outlasts it, the leaving ones a short one.
        for user in staying {
            q(&mut con, &["PRESENCE.ONLINE", user, "d", "TTL", "15000"]).unwrap();
        }
        for user in leaving {
            q(&mut con, &["PRESENCE.ONLINE", user, "d", "TTL", "2000"]).unwrap();
        }
        let mut victim_con = cluster.con(victim);
        let connect_seq: BTreeMap<&str, i64> = leaving
            .iter()
            .map(|u| {
                let key = format!("presence:{{{u}}}");
                (u.as_str(), stored_seq(&mut victim_con, &key))
            })
            .collect();
        let acked = int(&q(&mut victim_con, &["WAIT", "1", "5000"]).unwrap());
        assert_eq!(acked, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let beating = heartbeat_until(cluster, staying.to_vec(), stop.clone());

        let killed_at = Instant::now();
        cluster.kill(victim);
        let promoted = wait_until(Duration::from_secs(30), || {
            cluster.masters().iter().all(|(port, _)| *port != victim)
                && cluster
                    .masters()
                    .iter()
                    .map(|(_, r)| r.len())
                    .sum::<usize>()
                    >= 3
        });
        assert!(promoted, "{:?}: no replica took over", cluster.kind);
        let failover = killed_at.elapsed();
        let new_master = cluster.owner(keys::slot(on_victim[0].as_bytes()));
        assert_ne!(new_master, victim);

        // The leaving users' devices are swept by the new master: once each, the seq after the
        // connect's.
        let limit = Duration::from_millis(2000) + failover + Duration::from_secs(5);
        let mut offline: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut all: Vec<Message> = Vec::new();
        let until = Instant::now() + limit;
        let all_left =
            |offline: &BTreeMap<String, Vec<i64>>| leaving.iter().all(|u| offline.contains_key(u));
        while !all_left(&offline) && Instant::now() < until {
            if let Some(m) = global.next(until.saturating_duration_since(Instant::now())) {
                if m.str("status") == "offline" {
                    offline
                        .entry(m.str("user").to_string())
                        .or_default()
                        .push(m.int("seq"));
                }
                all.push(m);
            }
        }
        for user in leaving {
            assert_eq!(
                offline.get(user),
                Some(&vec![connect_seq[user.as_str()] + 1]),
                "{:?}: {user}: {all:?}",
                cluster.kind
            );
        }
        // The staying users never went offline, and their presence is whole on the new master.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let _ = beating.join().unwrap();
        let mut new = cluster.con(new_master);
        for user in staying {
            assert!(!offline.contains_key(user), "{user} announced offline");
            let g = map(&q(&mut new, &["PRESENCE.GET", user]).unwrap());
            assert_eq!(text(&g["status"]), "online", "{user}");
        }
        // Every seq a user was announced with is new.
        let mut seqs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for m in &all {
            seqs.entry(m.str("user").to_string())
                .or_default()
                .push(m.int("seq"));
        }
        for (user, seq) in seqs {
            let mut distinct = seq.clone();
            distinct.dedup();
            assert_eq!(distinct, seq, "{user}: a seq announced twice");
        }
        eprintln!(
            "{:?}: failover took {} ms",
            cluster.kind,
            failover.as_millis()
        );
    });
}

/// Starts moving `slot` to the master on port `to` with Valkey's atomic slot migration, run by
/// the slot's owner.
fn start_atomic_migration(cluster: &Cluster, slot: u16, to: u16) {
    let target = text(&q(&mut cluster.con(to), &["CLUSTER", "MYID"]).unwrap());
    let slot = slot.to_string();
    q(
        &mut cluster.con(cluster.owner(slot.parse().unwrap())),
        &[
            "CLUSTER",
            "MIGRATESLOTS",
            "SLOTSRANGE",
            &slot,
            &slot,
            "NODE",
            &target,
        ],
    )
    .unwrap_or_else(|e| panic!("CLUSTER MIGRATESLOTS: {e}"));
}

/// The states of the slot-migration jobs a node knows, for `operation` (IMPORT or EXPORT).
fn migration_states(con: &mut Connection, operation: &str) -> Vec<String> {
    array(&q(con, &["CLUSTER", "GETSLOTMIGRATIONS"]).unwrap())
        .iter()
        .map(map)
        .filter(|job| text(&job["operation"]).eq_ignore_ascii_case(operation))
        .map(|job| text(&job["state"]))
        .collect()
}

#[test]
fn valkey_atomic_slot_migration_under_heartbeats_loses_nothing_and_announces_once() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    let cluster = Cluster::start(Kind::Valkey, &["away-after", "0", "sweep-interval", "20"]);
    let slot = keys::slot(b"atomic0");
    let users = users_in_slot("atomic", slot, 40);
    let (stoppers, beaters) = users.split_at(10);
    let from = cluster.owner(slot);
    let mut masters = cluster.masters().into_iter().map(|(port, _)| port);
    let to = masters.find(|&p| p != from).unwrap();
    let watcher = cluster
        .masters()
        .into_iter()
        .map(|(p, _)| p)
        .find(|&p| p != from && p != to);
    // The global channel reaches every node (over the cluster bus, so a little later): one
    // subscriber sees what either owner announces.
    let mut events = Subscriber::on(
        cluster.con(watcher.unwrap()),
        "SUBSCRIBE",
        &[b"presence:events"],
    );
    let mut con = cluster.client();
    for user in beaters {
        q(&mut con, &["PRESENCE.ONLINE", user, "d", "TTL", "3000"]).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let beating = heartbeat_until(&cluster, beaters.to_vec(), stop.clone());
    // The stoppers connect once, with deadlines that fall while the slot moves or just after.
    for (i, user) in stoppers.iter().enumerate() {
        let ttl = (300 + 40 * i).to_string();
        q(&mut con, &["PRESENCE.ONLINE", user, "d", "TTL", &ttl]).unwrap();
    }
    let online = events.take(users.len(), WAIT);
    assert_eq!(online.len(), users.len());
    assert!(online.iter().all(|m| m.str("status") == "online"));
    std::thread::sleep(Duration::from_millis(200));
    start_atomic_migration(&cluster, slot, to);
    let mut source = cluster.con(from);
    assert!(wait_until(WAIT, || migration_states(&mut source, "EXPORT")
        .contains(&"success".to_string())));
    assert!(wait_until(WAIT, || cluster.owner(slot) == to));

    // Nothing is left on the old owner; the new one holds the records, the due index and the
    // listing of everyone, and lists exactly the users who are still online.
    let count_keys = |port: u16| {
        int(&q(
            &mut cluster.con(port),
            &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()],
        )
        .unwrap())
    };
    assert_eq!(count_keys(from), 0);
    assert_eq!(count_keys(to), 40 + 2);
    // Every stopper is announced offline once, by whichever owner held the slot at its deadline.
    let offline = events.take(stoppers.len(), WAIT);
    let mut announced: Vec<&str> = offline.iter().map(|m| m.str("user")).collect();
    announced.sort();
    let mut expected: Vec<&str> = stoppers.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(announced, expected, "each stopper announced once");
    assert!(offline
        .iter()
        .all(|m| (m.str("status"), m.str("reason")) == ("offline", "timeout")));
    // Within a second of each deadline, before the move, during it or after it: the new owner's
    // sweep looks at an imported slot as soon as it is its own.
    for m in &offline {
        let late = m.received - m.int("ts");
        assert!(late < 1000, "{} announced {late} ms late", m.str("user"));
    }
    assert!(wait_until(WAIT, || int(&q(
        &mut cluster.con(to),
        &["PRESENCE.COUNT"]
    )
    .unwrap())
        == 30));
    assert_eq!(
        int(&q(&mut cluster.con(from), &["PRESENCE.COUNT"]).unwrap()),
        0
    );

    // The others heartbeat through the move, never found missing.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (unknown, errors) = beating.join().unwrap();
    assert_eq!(unknown, 0, "heartbeats that found no device");
    assert!(errors.is_empty(), "{errors:?}");
    for row in bulk_anywhere(&mut con, beaters) {
        assert_eq!(text(&row[1]), "online");
    }
    // They time out on the new owner, each announced once, and nothing else is announced.
    let later = events.take(beaters.len(), WAIT);
    let mut announced: Vec<&str> = later.iter().map(|m| m.str("user")).collect();
    announced.sort();
    let mut expected: Vec<&str> = beaters.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(announced, expected);
    for m in &later {
        let late = m.received - m.int("ts");
        assert!(late < 1000, "{} announced {late} ms late", m.str("user"));
    }
    events.assert_quiet(Duration::from_secs(1));
}
