//! The core commands on real servers: replies, semantics and key layout.

mod common;

use common::*;
use redis::Value;
use std::time::Duration;

fn get(con: &mut redis::Connection, user: &str) -> std::collections::BTreeMap<String, Value> {
    map(&run(con, &["PRESENCE.GET", user]).unwrap())
}

fn now_ms(con: &mut redis::Connection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(con).unwrap();
    secs * 1000 + micros / 1000
}

#[test]
fn online_counts_devices_and_get_reports_the_user() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("alice");
        let t0 = now_ms(&mut con);
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap()),
            1
        );
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "laptop"]).unwrap()),
            2
        );
        // Refreshing a connected device does not add one.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap()),
            2
        );
        let t1 = now_ms(&mut con);
        let g = get(&mut con, &user);
        assert_eq!(text(&g["user"]), user);
        assert_eq!(text(&g["status"]), "online");
        assert_eq!(int(&g["devices"]), 2);
        let since = int(&g["since"]);
        let last_seen = int(&g["last_seen"]);
        assert!(t0 <= since && since <= last_seen && last_seen <= t1);
    });
}

#[test]
fn a_user_never_seen_is_offline_with_nil_times() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("nobody");
        let reply = run(&mut con, &["PRESENCE.GET", &user]).unwrap();
        assert_eq!(
            map_order(&reply),
            [
                "user",
                "status",
                "devices",
                "last_seen",
                "since",
                "message",
                "manual",
                "last_active",
                "scopes",
                "last_device"
            ]
        );
        let g = map(&reply);
        assert_eq!((g["message"].clone(), int(&g["manual"])), (Value::Nil, 0));
        assert_eq!(g["last_active"], Value::Nil);
        assert_eq!(text(&g["status"]), "offline");
        assert_eq!(int(&g["devices"]), 0);
        assert_eq!(g["last_seen"], Value::Nil);
        assert_eq!(g["since"], Value::Nil);
        // Reads create nothing.
        assert!(snapshot(&mut con)
            .keys()
            .all(|k| !k.windows(user.len()).any(|w| w == user.as_bytes())));
    });
}

#[test]
fn replies_are_maps_under_resp3_and_flat_arrays_under_resp2() {
    on_each_server(&[], |srv| {
        let user = unique("proto");
        let mut con2 = srv.con();
        run(
            &mut con2,
            &["PRESENCE.ONLINE", &user, "d1", "META", r#"{"os":"linux"}"#],
        )
        .unwrap();

        let resp2 = run(&mut con2, &["PRESENCE.GET", &user]).unwrap();
        assert!(
            matches!(resp2, Value::Array(ref a) if a.len() == 20),
            "{resp2:?}"
        );
        let devices2 = run(&mut con2, &["PRESENCE.DEVICES", &user]).unwrap();
        assert!(matches!(&array(&devices2)[0], Value::Array(a) if a.len() == 12));

        let mut con3 = srv.con3();
        let resp3 = run(&mut con3, &["PRESENCE.GET", &user]).unwrap();
        assert!(
            matches!(resp3, Value::Map(ref m) if m.len() == 10),
            "{resp3:?}"
        );
        assert_eq!(map(&resp3), map(&resp2));
        let devices3 = run(&mut con3, &["PRESENCE.DEVICES", &user]).unwrap();
        assert!(matches!(&array(&devices3)[0], Value::Map(m) if m.len() == 6));
        assert_eq!(map(&array(&devices3)[0]), map(&array(&devices2)[0]));
        // BULK rows stay arrays in both protocols.
        let bulk3 = run(&mut con3, &["PRESENCE.BULK", &user]).unwrap();
        assert_eq!(array(&array(&bulk3)[0]).len(), 4);
    });
}

#[test]
fn devices_lists_each_connected_device_with_its_times_and_meta() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("dev");
        let meta = r#"{"type":"phone","os":"ios","app":"3.2.1"}"#;
        run(
            &mut con,
            &[
                "PRESENCE.ONLINE",
                &user,
                "phone",
                "TTL",
                "5000",
                "META",
                meta,
            ],
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        run(&mut con, &["PRESENCE.ONLINE", &user, "web"]).unwrap();
        let rows = array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!(
            map_order(&rows[0]),
            [
                "device",
                "connected_at",
                "last_heartbeat",
                "expires_at",
                "meta",
                "context"
            ]
        );
        let phone = map(&rows[0]);
        assert_eq!(text(&phone["device"]), "phone");
        assert_eq!(text(&phone["meta"]), meta);
        assert_eq!(
            int(&phone["expires_at"]),
            int(&phone["last_heartbeat"]) + 5000
        );
        let web = map(&rows[1]);
        assert_eq!(text(&web["device"]), "web");
        assert_eq!(web["meta"], Value::Nil);
        // The default TTL is the `timeout` configuration (60000).
        assert_eq!(int(&web["expires_at"]), int(&web["last_heartbeat"]) + 60000);

        // ONLINE of a connected device keeps connected_at and META unless META is given.
        run(
            &mut con,
            &["PRESENCE.ONLINE", &user, "phone", "TTL", "5000"],
        )
        .unwrap();
        let phone2 = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        assert_eq!(phone2["connected_at"], phone["connected_at"]);
        assert_eq!(text(&phone2["meta"]), meta);
        run(
            &mut con,
            &[
                "PRESENCE.ONLINE",
                &user,
                "phone",
                "META",
                r#"{"os":"android"}"#,
            ],
        )
        .unwrap();
        let phone3 = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        assert_eq!(text(&phone3["meta"]), r#"{"os":"android"}"#);

        let none = unique("none");
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.DEVICES", &none]).unwrap()).len(),
            0
        );
    });
}

#[test]
fn heartbeat_extends_a_known_device_and_registers_an_unknown_one() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("hb");
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.HEARTBEAT", &user, "d", "TTL", "3000"]).unwrap()),
            0
        );
        assert_eq!(text(&get(&mut con, &user)["status"]), "online");
        let before = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.HEARTBEAT", &user, "d"]).unwrap()),
            1
        );
        let after = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        assert_eq!(after["connected_at"], before["connected_at"]);
        assert!(int(&after["last_heartbeat"]) > int(&before["last_heartbeat"]));
        // Without TTL the device keeps the TTL it was registered with.
        assert_eq!(
            int(&after["expires_at"]),
            int(&after["last_heartbeat"]) + 3000
        );
        run(&mut con, &["PRESENCE.HEARTBEAT", &user, "d", "TTL", "9000"]).unwrap();
        let again = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        assert_eq!(
            int(&again["expires_at"]),
            int(&again["last_heartbeat"]) + 9000
        );
        assert_eq!(
            int(&get(&mut con, &user)["last_seen"]),
            int(&again["last_heartbeat"])
        );
    });
}

#[test]
fn offline_removes_a_device_and_the_last_one_makes_the_user_offline() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("off");
        run(&mut con, &["PRESENCE.ONLINE", &user, "a"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "b"]).unwrap();
        let since = int(&get(&mut con, &user)["since"]);
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.OFFLINE", &user, "a"]).unwrap()),
            1
        );
        let g = get(&mut con, &user);
        assert_eq!(
            (text(&g["status"]), int(&g["devices"]), int(&g["since"])),
            ("online".into(), 1, since)
        );
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.OFFLINE", &user, "b"]).unwrap()),
            0
        );
        let g = get(&mut con, &user);
        assert_eq!(text(&g["status"]), "offline");
        assert_eq!(int(&g["devices"]), 0);
        assert_eq!(int(&g["last_seen"]), int(&g["since"]));
        assert!(int(&g["since"]) >= since);
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap()).len(),
            0
        );
    });
}

#[test]
fn offline_of_an_unknown_device_replies_0_and_changes_nothing() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("idem");
        run(&mut con, &["PRESENCE.ONLINE", &user, "a"]).unwrap();
        let before = snapshot_for(&mut con, &user);
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.OFFLINE", &user, "zzz"]).unwrap()),
            0
        );
        let stranger = unique("stranger");
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.OFFLINE", &stranger, "zzz"]).unwrap()),
            0
        );
        assert_eq!(snapshot_for(&mut con, &user), before);
        run(&mut con, &["PRESENCE.OFFLINE", &user, "a"]).unwrap();
        let after_first = snapshot_for(&mut con, &user);
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.OFFLINE", &user, "a"]).unwrap()),
            0
        );
        assert_eq!(snapshot_for(&mut con, &user), after_first);
    });
}

#[test]
fn bulk_answers_each_user_in_argument_order() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let (a, b, c) = (unique("a"), unique("b"), unique("c"));
        run(&mut con, &["PRESENCE.ONLINE", &a, "d1"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &a, "d2"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &c, "d1"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &c, "d1"]).unwrap();
        let rows = array(&run(&mut con, &["PRESENCE.BULK", &c, &b, &a, &c]).unwrap());
        assert_eq!(rows.len(), 4);
        let row = |i: usize| array(&rows[i]);
        assert_eq!(text(&row(0)[0]), c);
        assert_eq!(text(&row(0)[1]), "offline");
        assert_eq!(int(&row(0)[2]), int(&get(&mut con, &c)["last_seen"]));
        assert_eq!(int(&row(0)[3]), 0);
        assert_eq!(text(&row(1)[0]), b);
        assert_eq!(
            (text(&row(1)[1]), row(1)[2].clone(), int(&row(1)[3])),
            ("offline".into(), Value::Nil, 0)
        );
        assert_eq!(text(&row(2)[0]), a);
        assert_eq!(text(&row(2)[1]), "online");
        assert_eq!(int(&row(2)[3]), 2);
        assert_eq!(rows[3], rows[0]);
    });
}

#[test]
fn a_device_past_its_deadline_is_gone_for_every_command() {
    // The sweep is slowed down so that the device is still in the keys while reads are checked.
    on_each_server(&["sweep-interval", "60000"], |srv| {
        let mut con = srv.con();
        let user = unique("late");
        run(&mut con, &["PRESENCE.ONLINE", &user, "old", "TTL", "100"]).unwrap();
        let hb = int(
            &map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0])
                ["last_heartbeat"],
        );
        assert!(wait_until(Duration::from_secs(5), || {
            text(&get(&mut con, &user)["status"]) == "offline"
        }));
        // Nothing has removed it, yet no read shows it, and last_seen/since are its last heartbeat.
        let key = format!("presence:{{{user}}}");
        assert_eq!(
            int(&run(&mut con, &["HEXISTS", &key, "dev:old"]).unwrap()),
            1
        );
        let g = get(&mut con, &user);
        assert_eq!(
            (int(&g["devices"]), int(&g["last_seen"]), int(&g["since"])),
            (0, hb, hb)
        );
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap()).len(),
            0
        );
        let row = array(&array(&run(&mut con, &["PRESENCE.BULK", &user]).unwrap())[0]);
        assert_eq!((text(&row[1]), int(&row[3])), ("offline".into(), 0));
        // It does not count in ONLINE's reply, and a HEARTBEAT registers it anew.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "new"]).unwrap()),
            1
        );
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.HEARTBEAT", &user, "old"]).unwrap()),
            0
        );
        let g = get(&mut con, &user);
        assert_eq!(int(&g["devices"]), 2);
        assert!(int(&g["since"]) > hb, "a new session begins");
    });
}

#[test]
fn max_devices_refuses_a_new_device_but_never_a_heartbeat() {
    on_each_server(&["max-devices", "2"], |srv| {
        let mut con = srv.con();
        let user = unique("max");
        run(&mut con, &["PRESENCE.ONLINE", &user, "a"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "b", "TTL", "100"]).unwrap();
        let before = snapshot_for(&mut con, &user);
        let e = run(&mut con, &["PRESENCE.ONLINE", &user, "c"]).unwrap_err();
        assert_eq!(e, "ERR user already has 2 connected devices (max-devices)");
        let e = run(&mut con, &["PRESENCE.HEARTBEAT", &user, "c"]).unwrap_err();
        assert!(e.contains("max-devices"), "{e}");
        assert_eq!(snapshot_for(&mut con, &user), before);
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.HEARTBEAT", &user, "a"]).unwrap()),
            1
        );
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "a"]).unwrap()),
            2
        );
        // Once "b" is past its deadline it no longer counts.
        assert!(wait_until(Duration::from_secs(5), || {
            int(&get(&mut con, &user)["devices"]) == 1
        }));
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &user, "c"]).unwrap()),
            2
        );
    });
}

#[test]
fn ids_are_binary_safe() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let suffix = unique("");
        let users: Vec<Vec<u8>> = [
            &b"with space"[..],
            b"{braces}",
            b"a{b",
            b"}{",
            b"nul\0byte",
            b"\xff\xfe\x80",
            b"\r\n*3\r\n",
        ]
        .iter()
        .map(|u| [*u, suffix.as_bytes()].concat())
        .collect();
        for user in &users {
            let device: &[u8] = b"dev \0{x}\xff";
            assert_eq!(
                int(&call(&mut con, &[b"PRESENCE.ONLINE", user, device]).unwrap()),
                1
            );
            let g = map(&call(&mut con, &[b"PRESENCE.GET", user]).unwrap());
            assert_eq!(bytes(&g["user"]), *user);
            assert_eq!(text(&g["status"]), "online");
            let d = map(&array(&call(&mut con, &[b"PRESENCE.DEVICES", user]).unwrap())[0]);
            assert_eq!(bytes(&d["device"]), device);
            assert_eq!(
                int(&call(&mut con, &[b"PRESENCE.OFFLINE", user, device]).unwrap()),
                0
            );
        }
        let mut bulk: Vec<&[u8]> = vec![b"PRESENCE.BULK"];
        bulk.extend(users.iter().map(Vec::as_slice));
        let rows = array(&call(&mut con, &bulk).unwrap());
        for (row, user) in rows.iter().zip(&users) {
            assert_eq!(bytes(&array(row)[0]), *user);
        }
    });
}

#[test]
fn commands_declare_the_user_as_their_key() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        for cmd in [
            &["PRESENCE.ONLINE", "u1", "d", "TTL", "500"][..],
            &["PRESENCE.HEARTBEAT", "u1", "d"],
            &["PRESENCE.OFFLINE", "u1", "d"],
            &["PRESENCE.GET", "u1"],
            &["PRESENCE.DEVICES", "u1"],
        ] {
            let mut args = vec!["COMMAND", "GETKEYS"];
            args.extend_from_slice(cmd);
            let keys = array(&run(&mut con, &args).unwrap());
            assert_eq!(keys.iter().map(text).collect::<Vec<_>>(), ["u1"], "{cmd:?}");
        }
        let keys = array(
            &run(
                &mut con,
                &["COMMAND", "GETKEYS", "PRESENCE.BULK", "u1", "u2", "u3"],
            )
            .unwrap(),
        );
        assert_eq!(
            keys.iter().map(text).collect::<Vec<_>>(),
            ["u1", "u2", "u3"]
        );
    });
}

#[test]
fn the_key_layout_is_plain_redis_data() {
    on_each_server(&[], |srv| {
        if skip_on_external("needs an empty keyspace") {
            return;
        }
        let mut con = srv.con();
        run(
            &mut con,
            &[
                "PRESENCE.ONLINE",
                "alice",
                "phone",
                "TTL",
                "5000",
                "META",
                "{}",
            ],
        )
        .unwrap();
        let snap = snapshot(&mut con);
        let names: Vec<String> = snap
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        // The record, the slot's due index and its listing of everyone online (going idle needs no
        // timer: the listing's score is the last activity).
        assert_eq!(names.len(), 3, "{names:?}");
        let (kind, fields, expire) = &snap[&b"presence:{alice}".to_vec()];
        assert_eq!(kind, "hash");
        let names: Vec<&[u8]> = fields.iter().map(|(f, _)| f.as_slice()).collect();
        // `status` online (with a device) and `last_active` equal to `since` are implied.
        assert_eq!(names, [&b"dev:phone"[..], b"meta:phone", b"seq", b"since"]);
        // dev:<device> is the TTL alone: the device connected when the status began (`since`);
        // the deadline lives in the slot's due index.
        assert_eq!(fields[0].1, b"5000");
        let since: i64 = String::from_utf8(fields[3].1.clone())
            .unwrap()
            .parse()
            .unwrap();
        let parts = [since, 5000];
        // One event announced so far, the user's first: numbered after its time in µs, and
        // stored counted from since × 1000.
        assert_eq!(fields[2].1, b"0");
        // No TTL while a device is connected.
        assert_eq!(*expire, -1);
        let due = snap
            .iter()
            .find(|(k, _)| k.starts_with(b"presence:due:{"))
            .expect("due index");
        assert_eq!(due.1 .0, "zset");
        assert_eq!(
            due.1 .1,
            vec![(
                b"5:alice:phone".to_vec(),
                (parts[0] + 5000).to_string().into_bytes()
            )]
        );
        assert_eq!(due.1 .2, -1);
        let online = snap
            .iter()
            .find(|(k, _)| k.starts_with(b"presence:online:{"))
            .expect("listing");
        assert_eq!(
            online.1 .1,
            vec![(b"alice".to_vec(), parts[0].to_string().into_bytes())]
        );
        let devices = array(&run(&mut con, &["PRESENCE.DEVICES", "alice"]).unwrap());
        let d = map(&devices[0]);
        assert_eq!(int(&d["connected_at"]), parts[0]);
        assert_eq!(int(&d["expires_at"]), parts[0] + 5000);
        // The last device leaving clears the index and keeps the record for the retention.
        run(&mut con, &["PRESENCE.OFFLINE", "alice", "phone"]).unwrap();
        let snap = snapshot(&mut con);
        assert_eq!(snap.len(), 1);
        let (_, fields, expire) = &snap[&b"presence:{alice}".to_vec()];
        let seen: i64 = String::from_utf8(
            fields
                .iter()
                .find(|(f, _)| f == b"last_seen")
                .unwrap()
                .1
                .clone(),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert_eq!(*expire, seen + 30 * 24 * 3600 * 1000);
    });
}

#[test]
fn an_offline_record_disappears_after_the_retention() {
    on_each_server(&["retention", "1000"], |srv| {
        let mut con = srv.con();
        let user = unique("gone");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "d"]).unwrap();
        assert_ne!(get(&mut con, &user)["last_seen"], Value::Nil);
        assert!(wait_until(Duration::from_secs(5), || {
            get(&mut con, &user)["last_seen"] == Value::Nil
        }));
        let g = get(&mut con, &user);
        assert_eq!(
            (text(&g["status"]), g["since"].clone()),
            ("offline".into(), Value::Nil)
        );
    });
}

#[test]
fn wrong_types_are_refused_and_change_nothing() {
    on_each_server(&[], |srv| {
        if skip_on_external("overwrites an index key shared by other users of the slot") {
            return;
        }
        let mut con = srv.con();
        run(&mut con, &["SET", "presence:{mallory}", "x"]).unwrap();
        let before = snapshot(&mut con);
        for cmd in [
            &["PRESENCE.ONLINE", "mallory", "d"][..],
            &["PRESENCE.HEARTBEAT", "mallory", "d"],
            &["PRESENCE.OFFLINE", "mallory", "d"],
            &["PRESENCE.GET", "mallory"],
            &["PRESENCE.DEVICES", "mallory"],
            &["PRESENCE.BULK", "bob", "mallory"],
        ] {
            let e = run(&mut con, cmd).unwrap_err();
            assert!(e.starts_with("WRONGTYPE"), "{cmd:?}: {e}");
        }
        assert_eq!(snapshot(&mut con), before);

        // The slot's due index overwritten: the write is refused before anything changes.
        run(&mut con, &["PRESENCE.ONLINE", "trent", "d"]).unwrap();
        let due = snapshot(&mut con)
            .into_keys()
            .find(|k| k.starts_with(b"presence:due:"))
            .unwrap();
        call(&mut con, &[b"DEL", &due]).unwrap();
        call(&mut con, &[b"SET", &due, b"x"]).unwrap();
        let before = snapshot(&mut con);
        let e = run(&mut con, &["PRESENCE.HEARTBEAT", "trent", "d"]).unwrap_err();
        assert!(e.starts_with("WRONGTYPE"), "{e}");
        assert_eq!(snapshot(&mut con), before);
        // Reads use the index too.
        let e = run(&mut con, &["PRESENCE.GET", "trent"]).unwrap_err();
        assert!(e.starts_with("WRONGTYPE"), "{e}");
    });
}
