//! Misuse: the module's keys changed by hand, FLUSHALL under a sweep backlog, transactions and
//! scripts, maxmemory, ACLs. Each behaves as a Redis user would expect, and the module keeps working.

mod common;

use common::*;
use redis::Value;
use std::time::Duration;

fn status(con: &mut redis::Connection, user: &str) -> (String, i64) {
    let g = map(&run(con, &["PRESENCE.GET", user]).unwrap());
    (text(&g["status"]), int(&g["devices"]))
}

fn due_key_of(con: &mut redis::Connection, user: &str) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("presence:due:*").query(con).unwrap();
    let member = format!("{}:{user}:", user.len());
    keys.into_iter()
        .find(|k| {
            let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .query(con)
                .unwrap();
            members.iter().any(|m| m.starts_with(member.as_bytes()))
        })
        .expect("the user's due key")
}

#[test]
fn a_record_deleted_by_hand_is_forgotten_and_its_index_entries_are_dropped() {
    on_each_server(&["sweep-interval", "20"], |srv| {
        let mut con = srv.con();
        let user = unique("deleted");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d", "TTL", "300"]).unwrap();
        let due = due_key_of(&mut con, &user);
        run(&mut con, &["DEL", &format!("presence:{{{user}}}")]).unwrap();
        // Reads see a user never seen; the orphaned index entry goes when it falls due.
        assert_eq!(status(&mut con, &user), ("offline".into(), 0));
        assert!(wait_until(Duration::from_secs(20), || {
            let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                .arg(&due)
                .arg(0)
                .arg(-1)
                .query(&mut con)
                .unwrap();
            !members
                .iter()
                .any(|m| m.windows(user.len()).any(|w| w == user.as_bytes()))
        }));
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap()),
            1
        );
        assert_eq!(status(&mut con, &user), ("online".into(), 1));
    });
}

#[test]
fn a_due_index_deleted_by_hand_leaves_devices_disconnected_until_they_heartbeat() {
    on_each_server(&[], |srv| {
        if skip_on_external("the index is shared with other users of the slot") {
            return;
        }
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", "ivy", "d"]).unwrap();
        let due = due_key_of(&mut con, "ivy");
        call(&mut con, &[b"DEL", &due]).unwrap();
        assert_eq!(status(&mut con, "ivy"), ("offline".into(), 0));
        // The next heartbeat registers the device again.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.HEARTBEAT", "ivy", "d"]).unwrap()),
            0
        );
        assert_eq!(status(&mut con, "ivy"), ("online".into(), 1));
    });
}

#[test]
fn a_ttl_set_by_hand_is_honoured() {
    on_each_server(&["sweep-interval", "20"], |srv| {
        let mut con = srv.con();
        let user = unique("ttl");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d", "TTL", "600"]).unwrap();
        run(
            &mut con,
            &["PEXPIRE", &format!("presence:{{{user}}}"), "100"],
        )
        .unwrap();
        assert!(wait_until(Duration::from_secs(20), || {
            map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap())["last_seen"] == Value::Nil
        }));
        // The module goes on: the user can come back.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap()),
            1
        );
    });
}

#[test]
fn flushall_during_a_sweep_backlog_leaves_nothing_behind() {
    on_each_server(&["sweep-interval", "60000", "sweep-budget", "10"], |srv| {
        if skip_on_external("flushes the server") {
            return;
        }
        let mut con = srv.con();
        let mut pipe = redis::pipe();
        for i in 0..2000 {
            pipe.cmd("PRESENCE.ONLINE")
                .arg(format!("f{i}"))
                .arg("d")
                .arg("TTL")
                .arg(100)
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        assert!(wait_until(Duration::from_secs(20), || status(
            &mut con, "f1999"
        )
        .0 == "offline"));
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        // A backlog in small runs, then everything flushed while it is worked off.
        run(&mut con, &["CONFIG", "SET", "presence.sweep-interval", "1"]).unwrap();
        assert!(global.next(Duration::from_secs(20)).is_some());
        run(&mut con, &["FLUSHALL"]).unwrap();
        while global.next(Duration::from_millis(300)).is_some() {}
        assert_eq!(int(&run(&mut con, &["DBSIZE"]).unwrap()), 0);
        let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
        assert!(info.contains("presence_users_online:0"), "{info}");
        assert!(info.contains("presence_devices_online:0"), "{info}");
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", "f1", "d"]).unwrap()),
            1
        );
        assert_eq!(status(&mut con, "f1"), ("online".into(), 1));
    });
}

#[test]
fn swapdb_makes_the_listings_and_the_sweep_follow_database_0() {
    on_each_server(&["sweep-interval", "20"], |srv| {
        if skip_on_external("swaps the server's databases") {
            return;
        }
        let mut con = srv.con();
        let count = |con: &mut redis::Connection| int(&run(con, &["PRESENCE.COUNT"]).unwrap());
        run(&mut con, &["PRESENCE.ONLINE", "stays", "d"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", "leaves", "d", "TTL", "300"]).unwrap();
        assert_eq!(count(&mut con), 2);
        // Database 0 is now empty: nothing to list, nothing to sweep.
        run(&mut con, &["SWAPDB", "0", "1"]).unwrap();
        assert_eq!(count(&mut con), 0);
        assert_eq!(
            text(
                &run(&mut con, &["PRESENCE.LIST"])
                    .unwrap()
                    .as_sequence()
                    .unwrap()[0]
            ),
            "0"
        );
        // Back: both listed, and the short-lived device is swept where it now lives.
        run(&mut con, &["SWAPDB", "0", "1"]).unwrap();
        assert_eq!(count(&mut con), 2);
        assert!(wait_until(Duration::from_secs(5), || count(&mut con) == 1));
        assert_eq!(status(&mut con, "leaves").0, "offline");
    });
}

#[test]
fn transactions_and_scripts_run_the_commands_atomically() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("tx");
        let replies: (i64, i64, Value) = redis::pipe()
            .atomic()
            .cmd("PRESENCE.ONLINE")
            .arg(&user)
            .arg("a")
            .cmd("PRESENCE.ONLINE")
            .arg(&user)
            .arg("b")
            .cmd("PRESENCE.GET")
            .arg(&user)
            .query(&mut con)
            .unwrap();
        assert_eq!((replies.0, replies.1), (1, 2));
        assert_eq!(int(&map(&replies.2)["devices"]), 2);
        // An error inside MULTI fails that command alone, as in Redis.
        run(&mut con, &["MULTI"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "c", "TTL", "5"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "a"]).unwrap();
        // (The client reports the failed command's error for the whole EXEC reply.)
        let exec = run(&mut con, &["EXEC"]);
        assert!(
            matches!(&exec, Err(e) if e.contains("TTL must be")),
            "{exec:?}"
        );
        // The OFFLINE in the same transaction took effect; the refused ONLINE did not.
        assert_eq!(status(&mut con, &user), ("online".into(), 1));
        let devices = array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap());
        assert_eq!(text(&map(&devices[0])["device"]), "b");
        // Scripts call the commands like any other.
        let script = "redis.call('PRESENCE.ONLINE', KEYS[1], 'lua'); \
                      return redis.call('PRESENCE.GET', KEYS[1])";
        let g = map(&run(&mut con, &["EVAL", script, "1", &user]).unwrap());
        assert_eq!(int(&g["devices"]), 2);
        // A read-only script may read but not write.
        let ro = run(
            &mut con,
            &[
                "EVAL_RO",
                "return redis.call('PRESENCE.GET', KEYS[1])",
                "1",
                &user,
            ],
        );
        assert!(ro.is_ok());
        let e = run(
            &mut con,
            &[
                "EVAL_RO",
                "return redis.call('PRESENCE.ONLINE', KEYS[1], 'x')",
                "1",
                &user,
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("Write commands are not allowed") || e.contains("write"),
            "{e}"
        );
        assert_eq!(status(&mut con, &user), ("online".into(), 2));
    });
}

#[test]
fn at_maxmemory_writes_that_grow_are_refused_and_reads_still_served() {
    on_each_server(&[], |srv| {
        if skip_on_external("changes maxmemory") {
            return;
        }
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", "mia", "phone"]).unwrap();
        let used: i64 = {
            let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        run(
            &mut con,
            &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        )
        .unwrap();
        run(
            &mut con,
            &["CONFIG", "SET", "maxmemory", &(used / 2).to_string()],
        )
        .unwrap();
        let e = run(&mut con, &["PRESENCE.ONLINE", "mia", "laptop"]).unwrap_err();
        assert!(e.starts_with("OOM"), "{e}");
        let e = run(&mut con, &["PRESENCE.HEARTBEAT", "mia", "phone"]).unwrap_err();
        assert!(e.starts_with("OOM"), "{e}");
        assert_eq!(status(&mut con, "mia"), ("online".into(), 1));
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.BULK", "mia"]).unwrap()).len(),
            1
        );
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.DEVICES", "mia"]).unwrap()).len(),
            1
        );
        // Leaving frees memory, so it is allowed.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.OFFLINE", "mia", "phone"]).unwrap()),
            0
        );
        run(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", "mia", "laptop"]).unwrap()),
            1
        );
    });
}

#[test]
fn acl_rules_apply_to_commands_and_to_user_ids_as_keys() {
    on_each_server(&[], |srv| {
        if skip_on_external("creates an ACL user") {
            return;
        }
        let mut admin = srv.con();
        run(&mut admin, &["PRESENCE.ONLINE", "alice", "d"]).unwrap();
        run(&mut admin, &["PRESENCE.ONLINE", "bob", "d"]).unwrap();
        run(
            &mut admin,
            &[
                "ACL",
                "SETUSER",
                "viewer",
                "on",
                ">secret",
                "+presence.get",
                "+presence.bulk",
                "~alice*",
            ],
        )
        .unwrap();
        let mut viewer = srv.con();
        run(&mut viewer, &["AUTH", "viewer", "secret"]).unwrap();
        assert_eq!(status(&mut viewer, "alice"), ("online".into(), 1));
        let e = run(&mut viewer, &["PRESENCE.GET", "bob"]).unwrap_err();
        assert!(e.starts_with("NOPERM"), "{e}");
        let e = run(&mut viewer, &["PRESENCE.BULK", "alice", "bob"]).unwrap_err();
        assert!(e.starts_with("NOPERM"), "{e}");
        let e = run(&mut viewer, &["PRESENCE.ONLINE", "alice", "x"]).unwrap_err();
        assert!(e.starts_with("NOPERM"), "{e}");
        assert_eq!(status(&mut admin, "alice"), ("online".into(), 1));
    });
}
