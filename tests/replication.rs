//! Replicas and the AOF hold exactly the master's state: commands replicate their effects with
//! explicit timestamps, never themselves.

mod common;

use common::*;
use std::time::Duration;

/// A mixed workload: connects with META and TTLs, heartbeats, clean departures, devices that time
/// out and are settled by later writes, rooms and typing, refusals, binary ids, MULTI/EXEC and a
/// Lua script.
fn workload(con: &mut redis::Connection) {
    for i in 0..40 {
        let user = format!("user:{i:04}");
        run(
            con,
            &[
                "PRESENCE.ONLINE",
                &user,
                "phone",
                "META",
                &format!(r#"{{"n":{i}}}"#),
            ],
        )
        .unwrap();
        if i % 2 == 0 {
            run(con, &["PRESENCE.ONLINE", &user, "web", "TTL", "100"]).unwrap();
        }
        if i % 3 == 0 {
            run(con, &["PRESENCE.HEARTBEAT", &user, "phone", "TTL", "30000"]).unwrap();
        }
        if i % 7 == 0 {
            // The hot path: a connected device keeping its TTL.
            run(con, &["PRESENCE.HEARTBEAT", &user, "phone"]).unwrap();
        }
        // Rooms: joined with and without data, left, typed in; the short-lived web device's
        // rooms and typing go with it when it times out.
        let room = format!("room:{}", i % 4);
        run(
            con,
            &[
                "PRESENCE.JOIN",
                &user,
                "phone",
                &room,
                "DATA",
                &format!(r#"{{"i":{i}}}"#),
            ],
        )
        .unwrap();
        if i % 2 == 0 {
            let other = format!("room:{}", i % 3);
            run(con, &["PRESENCE.JOIN", &user, "web", &other]).unwrap();
            run(con, &["PRESENCE.TYPING", &user, "web", &other]).unwrap();
        }
        if i % 6 == 0 {
            run(con, &["PRESENCE.LEAVE", &user, "phone", &room]).unwrap();
        } else if i % 4 == 1 {
            run(con, &["PRESENCE.TYPING", &user, "phone", &room]).unwrap();
            run(con, &["PRESENCE.TYPING", &user, "phone", "NONE"]).unwrap();
        }
        if i % 5 == 0 {
            run(con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        }
    }
    call(con, &[b"PRESENCE.ONLINE", b"bin\0{x}\xff", b"dev\r\n"]).unwrap();
    call(con, &[b"PRESENCE.HEARTBEAT", b"a}b", b"d"]).unwrap();
    // Let the short-lived devices pass their deadline, then touch their users so writes settle them.
    std::thread::sleep(Duration::from_millis(150));
    for i in (0..40).step_by(4) {
        let user = format!("user:{i:04}");
        run(con, &["PRESENCE.HEARTBEAT", &user, "tablet", "TTL", "200"]).unwrap();
    }
    // A refused write replicates nothing.
    assert!(run(con, &["PRESENCE.ONLINE", "user:0001", "x", "TTL", "1"]).is_err());
    let _: () = redis::pipe()
        .atomic()
        .cmd("PRESENCE.ONLINE")
        .arg("tx")
        .arg("a")
        .cmd("PRESENCE.HEARTBEAT")
        .arg("tx")
        .arg("b")
        .cmd("PRESENCE.OFFLINE")
        .arg("tx")
        .arg("a")
        .query(con)
        .unwrap();
    run(
        con,
        &[
            "EVAL",
            "redis.call('PRESENCE.ONLINE', KEYS[1], 'lua', 'TTL', '5000'); return redis.call('PRESENCE.HEARTBEAT', KEYS[1], 'lua')",
            "1",
            "scripted",
        ],
    )
    .unwrap();
}

/// Waits until the sweep has removed the workload's short-lived devices, so that nothing changes
/// while states are compared (the devices left have TTLs of 30 s and more).
fn wait_for_sweeps(con: &mut redis::Connection) {
    let swept = wait_until(Duration::from_secs(10), || {
        snapshot(con).values().all(|(_, fields, _)| {
            fields
                .iter()
                .all(|(f, _)| f != b"dev:web" && f != b"dev:tablet")
        })
    });
    assert!(swept, "the sweep did not remove the expired devices");
}

#[test]
fn a_replica_holds_exactly_the_masters_state() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        let master = Server::start(kind, &[], &[]);
        let replica = Server::start_replica_of(&master);
        let mut rcon = replica.con();
        let mut mcon = master.con();
        workload(&mut mcon);
        wait_for_sweeps(&mut mcon);
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut mcon)
            .unwrap();
        assert_eq!(acked, 1, "{kind:?}");
        let on_master = snapshot(&mut mcon);
        assert!(
            on_master.len() > 40,
            "{kind:?}: workload wrote {}",
            on_master.len()
        );
        assert_eq!(snapshot(&mut rcon), on_master, "{kind:?}");
        // The replica answers reads from the same state.
        let g = map(&run(&mut rcon, &["PRESENCE.GET", "user:0003"]).unwrap());
        assert_eq!(text(&g["status"]), "online");
    }
}

#[test]
fn an_aof_reload_and_a_restart_hold_exactly_the_same_state() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        let config = ["--appendonly", "yes", "--appendfsync", "always"];
        let server = Server::start(kind, &[], &config);
        let mut con = server.con();
        workload(&mut con);
        wait_for_sweeps(&mut con);
        let before = snapshot(&mut con);
        run(&mut con, &["DEBUG", "LOADAOF"]).unwrap();
        assert_eq!(snapshot(&mut con), before, "{kind:?}: DEBUG LOADAOF");

        // A rewritten AOF, then a new process on the same files.
        run(&mut con, &["BGREWRITEAOF"]).unwrap();
        assert!(wait_until(Duration::from_secs(10), || {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query(&mut con)
                .unwrap();
            info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
        }));
        let restarted = server.restart(&[], &config);
        let mut con = restarted.con();
        assert_eq!(snapshot(&mut con), before, "{kind:?}: restart");
    }
}
