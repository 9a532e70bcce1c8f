//! The sweep's guarantees: detection time, mass expiry, restart, failover, and the SWEEP command.
//! The timing tests, and the restart and failover tests that load the machine, take one lock so
//! that no test measures another's load.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per user, the events received must have consecutive seq numbers in order, with no repeat.
fn assert_seq_in_order(messages: &[Message]) {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for m in messages {
        let prev = last.insert(m.str("user").to_string(), m.int("seq"));
        if let Some(prev) = prev {
            assert_eq!(m.int("seq"), prev + 1, "{:?}", m.payload);
        }
    }
}

#[test]
fn offline_events_arrive_between_timeout_and_timeout_plus_200ms() {
    let _serial = timing_lock();
    on_each_server(&["timeout", "1000", "sweep-interval", "50"], |srv| {
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = srv.con();
        const USERS: usize = 60;
        let prefix = unique("det");
        // Devices stop heartbeating at different moments over about 600 ms.
        for round in 0..3 {
            for i in 0..USERS {
                if round == 0 || i % 3 >= round {
                    run(
                        &mut con,
                        &["PRESENCE.HEARTBEAT", &format!("{prefix}-{i}"), "d"],
                    )
                    .unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for i in 0..USERS {
            if i % 2 == 0 {
                run(
                    &mut con,
                    &["PRESENCE.HEARTBEAT", &format!("{prefix}-{i}"), "d"],
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let messages = global.take(2 * USERS, Duration::from_secs(10));
        let offline: Vec<&Message> = messages
            .iter()
            .filter(|m| m.str("status") == "offline")
            .collect();
        assert_eq!(offline.len(), USERS, "{kind:?}", kind = srv.kind);
        let mut worst = 0;
        for m in &offline {
            assert_eq!(m.str("reason"), "timeout");
            let delay = m.received - m.int("last_seen");
            worst = worst.max(delay);
            assert!(
                (1000..=1200).contains(&delay),
                "{:?}: offline event {delay} ms after the last heartbeat",
                srv.kind
            );
        }
        eprintln!(
            "{:?}: slowest offline event {worst} ms after the last heartbeat",
            srv.kind
        );
        assert_seq_in_order(&messages);
    });
}

#[test]
fn a_mass_expiry_is_swept_over_several_runs_while_the_server_keeps_answering() {
    let _serial = timing_lock();
    on_each_server(&["timeout", "1000", "sweep-interval", "60000"], |srv| {
        const USERS: usize = 20_000;
        let prefix = unique("mass");
        let mut con = srv.con();
        // With the sweep held off, 20,000 devices connect and then all pass their deadline: from the
        // sweep's point of view they expire together (a gateway with 20,000 connections died).
        let mut pipe = redis::pipe();
        for i in 0..USERS {
            pipe.cmd("PRESENCE.ONLINE")
                .arg(format!("{prefix}-{i}"))
                .arg("d")
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        let last = format!("{prefix}-{}", USERS - 1);
        assert!(wait_until(Duration::from_secs(10), || {
            text(&map(&run(&mut con, &["PRESENCE.GET", &last]).unwrap())["status"]) == "offline"
        }));
        let users: Vec<String> = (0..USERS).map(|i| format!("{prefix}-{i}")).collect();
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        let connect_seq: BTreeMap<&str, i64> = names
            .iter()
            .copied()
            .zip(stored_seqs(&mut con, &names))
            .collect();
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);

        // A client pings throughout and records its worst round trip.
        let stop = Arc::new(AtomicBool::new(false));
        let worst_us = Arc::new(AtomicU64::new(0));
        let pinger = {
            let (stop, worst_us) = (stop.clone(), worst_us.clone());
            let mut ping = srv.con();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let _: String = redis::cmd("PING").query(&mut ping).unwrap();
                    worst_us.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let runs_before = info_field(&mut con, "sweep_runs");
        run(
            &mut con,
            &["CONFIG", "SET", "presence.sweep-interval", "20"],
        )
        .unwrap();
        let started = Instant::now();
        let messages = global.take(USERS, Duration::from_secs(60));
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        pinger.join().unwrap();

        assert_eq!(messages.len(), USERS, "{:?}", srv.kind);
        let mut users: Vec<&str> = messages.iter().map(|m| m.str("user")).collect();
        users.sort();
        users.dedup();
        assert_eq!(users.len(), USERS, "one event per user");
        assert!(messages.iter().all(
            |m| m.str("reason") == "timeout" && m.int("seq") == connect_seq[m.str("user")] + 1
        ));
        // Bounded work per run: the default budget of 1000 devices takes at least 20 runs.
        assert!(info_field(&mut con, "sweep_runs") - runs_before >= 20);
        assert_eq!(info_field(&mut con, "sweep_lag_ms"), 0);
        global.assert_quiet(Duration::from_millis(300));
        eprintln!(
            "{:?}: {USERS} expired devices announced in {} ms; worst PING meanwhile {} us",
            srv.kind,
            took.as_millis(),
            worst_us.load(Ordering::Relaxed)
        );
    });
}

#[test]
fn devices_that_expired_while_the_server_was_down_are_announced_after_restart() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    let _serial = timing_lock();
    for kind in kinds() {
        let config = ["--appendonly", "yes", "--appendfsync", "always"];
        let args = ["sweep-interval", "60000"];
        let server = Server::start(kind, &args, &config);
        let mut con = server.con();
        let user = unique("down");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d", "TTL", "300"]).unwrap();
        let hb = int(
            &map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0])
                ["last_heartbeat"],
        );
        let connect_seq = stored_seqs(&mut con, &[&user])[0];
        let server = server.restart(&args, &config);
        let mut global = Subscriber::new(&server, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = server.con();
        assert!(wait_until(Duration::from_secs(5), || epoch_ms() > hb + 300));
        // The timer (its interval now short) finds the device and announces it.
        run(
            &mut con,
            &["CONFIG", "SET", "presence.sweep-interval", "50"],
        )
        .unwrap();
        let got = global.take(1, Duration::from_secs(5));
        assert_eq!(got.len(), 1, "{kind:?}");
        assert_eq!(
            (
                got[0].str("status"),
                got[0].str("reason"),
                got[0].int("last_seen"),
                got[0].int("seq")
            ),
            ("offline", "timeout", hb, connect_seq + 1),
            "{kind:?}"
        );
        let g = map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap());
        assert_eq!(int(&g["last_seen"]), hb);
        global.assert_quiet(Duration::from_millis(300));
    }
}

#[test]
fn a_promoted_replica_sweeps_what_the_old_master_left() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    let _serial = timing_lock();
    for kind in kinds() {
        let master = Server::start(kind, &[], &[]);
        let replica = Server::start_replica_of(&master);
        let mut rcon = replica.con();
        let mut mcon = master.con();
        let user = unique("failover");
        run(&mut mcon, &["PRESENCE.ONLINE", &user, "d", "TTL", "500"]).unwrap();
        run(
            &mut mcon,
            &["PRESENCE.ONLINE", &user, "keep", "TTL", "600000"],
        )
        .unwrap();
        let other = unique("gone");
        run(&mut mcon, &["PRESENCE.ONLINE", &other, "d", "TTL", "500"]).unwrap();
        let _: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut mcon)
            .unwrap();
        drop(mcon);
        let connect_seq = stored_seqs(&mut rcon, &[&other])[0];
        drop(master); // the master dies

        let mut global = Subscriber::new(&replica, "SUBSCRIBE", &[b"presence:events"]);
        let key = format!("presence:{{{other}}}");
        assert!(wait_until(Duration::from_secs(5), || {
            text(&map(&run(&mut rcon, &["PRESENCE.GET", &other]).unwrap())["status"]) == "offline"
        }));
        // A replica never sweeps: the expired device is still in its keys.
        assert_eq!(
            int(&run(&mut rcon, &["HEXISTS", &key, "dev:d"]).unwrap()),
            1
        );
        assert!(run(&mut rcon, &["PRESENCE.SWEEP"]).is_err());

        run(&mut rcon, &["REPLICAOF", "NO", "ONE"]).unwrap();
        let got = global.take(1, Duration::from_secs(5));
        assert_eq!(got.len(), 1, "{kind:?}: the promoted replica did not sweep");
        assert_eq!(
            (got[0].str("user"), got[0].str("reason"), got[0].int("seq")),
            (other.as_str(), "timeout", connect_seq + 1)
        );
        assert!(wait_until(Duration::from_secs(5), || {
            int(&run(&mut rcon, &["HEXISTS", &key, "dev:d"]).unwrap()) == 0
        }));
        // The user who keeps a device stays online: only a device-level change, not announced.
        let g = map(&run(&mut rcon, &["PRESENCE.GET", &user]).unwrap());
        assert_eq!(
            (text(&g["status"]), int(&g["devices"])),
            ("online".into(), 1)
        );
        global.assert_quiet(Duration::from_millis(300));
    }
}

#[test]
fn the_sweep_command_removes_due_devices_up_to_its_limit() {
    on_each_server(&["sweep-interval", "60000"], |srv| {
        let mut con = srv.con();
        let prefix = unique("cmd");
        for i in 0..5 {
            run(
                &mut con,
                &[
                    "PRESENCE.ONLINE",
                    &format!("{prefix}-{i}"),
                    "d",
                    "TTL",
                    "100",
                ],
            )
            .unwrap();
        }
        let last = format!("{prefix}-4");
        assert!(wait_until(Duration::from_secs(5), || {
            text(&map(&run(&mut con, &["PRESENCE.GET", &last]).unwrap())["status"]) == "offline"
        }));
        if skip_on_external("other devices of the shared server may be due too") {
            return;
        }
        // Each call removes at most LIMIT; it also stops at 10 ms, which after a start may pass
        // before it meets a device (the sweep does not yet know which slots are empty).
        let mut removed = 0;
        for _ in 0..1000 {
            let n = int(&run(&mut con, &["PRESENCE.SWEEP", "LIMIT", "2"]).unwrap());
            assert!((0..=2).contains(&n), "LIMIT 2 removed {n}");
            removed += n;
            if removed == 5 {
                break;
            }
        }
        assert_eq!(removed, 5);
        assert_eq!(int(&run(&mut con, &["PRESENCE.SWEEP"]).unwrap()), 0);
        for bad in [
            &["PRESENCE.SWEEP", "LIMIT", "0"][..],
            &["PRESENCE.SWEEP", "LIMIT", "x"],
            &["PRESENCE.SWEEP", "FOO", "1"],
            &["PRESENCE.SWEEP", "LIMIT"],
        ] {
            let e = run(&mut con, bad).unwrap_err();
            assert!(e.starts_with("ERR "), "{bad:?}: {e}");
        }
    });
}
