//! Rooms: devices join and leave them one at a time, with member data; a departing device takes
//! its rooms and its typing; each room's events go to that room's channel only; a room's
//! listing pages with a cursor that stays valid while members come and go.

mod common;

use common::*;
use redis::{Connection, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn room_events(srv: &Server, rooms: &[&str]) -> Subscriber {
    let channels: Vec<Vec<u8>> = rooms
        .iter()
        .map(|r| format!("presence:room:{r}").into_bytes())
        .collect();
    let channels: Vec<&[u8]> = channels.iter().map(Vec::as_slice).collect();
    Subscriber::new(srv, "SUBSCRIBE", &channels)
}

/// `(event, reason, user, device, devices)` of each message.
fn summary(messages: &[Message]) -> Vec<(String, String, String, String, i64)> {
    messages
        .iter()
        .map(|m| {
            (
                m.str("event").to_owned(),
                m.str("reason").to_owned(),
                m.str("user").to_owned(),
                m.str("device").to_owned(),
                m.int("devices"),
            )
        })
        .collect()
}

fn row(
    event: &str,
    reason: &str,
    user: &str,
    device: &str,
    devices: i64,
) -> (String, String, String, String, i64) {
    (
        event.into(),
        reason.into(),
        user.into(),
        device.into(),
        devices,
    )
}

fn texts(v: &Value) -> Vec<String> {
    array(v).iter().map(text).collect()
}

fn count(con: &mut Connection, room: &str) -> i64 {
    int(&run(con, &["PRESENCE.COUNT", "SCOPE", room]).unwrap())
}

/// Every user of a room's listing, page by page of `limit`.
fn members(con: &mut Connection, room: &str, limit: usize) -> Vec<String> {
    let mut cursor = "0".to_owned();
    let mut users = Vec::new();
    loop {
        let reply = array(
            &run(
                con,
                &[
                    "PRESENCE.LIST",
                    "SCOPE",
                    room,
                    "LIMIT",
                    &limit.to_string(),
                    "CURSOR",
                    &cursor,
                ],
            )
            .unwrap(),
        );
        users.extend(array(&reply[1]).iter().map(|r| text(&array(r)[0])));
        cursor = text(&reply[0]);
        if cursor == "0" {
            return users;
        }
    }
}

#[test]
fn devices_join_and_leave_rooms_one_at_a_time_with_member_data() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let (user, chat, call) = (unique("ann"), unique("chat"), unique("call"));
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "laptop"]).unwrap();
        let data = r#"{"role":"host"}"#;
        let join = |con: &mut Connection, args: &[&str]| {
            let mut call = vec!["PRESENCE.JOIN", user.as_str()];
            call.extend(args);
            run(con, &call)
        };
        assert_eq!(
            int(&join(&mut con, &["phone", &chat, "DATA", data]).unwrap()),
            1
        );
        assert_eq!(int(&join(&mut con, &["laptop", &chat]).unwrap()), 1);
        assert_eq!(int(&join(&mut con, &["laptop", &call]).unwrap()), 1);
        assert_eq!(
            int(&join(&mut con, &["laptop", &call]).unwrap()),
            0,
            "already in"
        );
        let mut rooms = vec![chat.clone(), call.clone()];
        rooms.sort();
        assert_eq!(
            texts(&run(&mut con, &["PRESENCE.ROOMS", &user]).unwrap()),
            rooms
        );
        let phone = array(&run(&mut con, &["PRESENCE.ROOMS", &user, "phone"]).unwrap());
        assert_eq!(phone.len(), 1);
        assert_eq!(texts(&phone[0]), vec![chat.clone(), data.to_owned()]);
        // The room's listing shows the user once, with both devices and their data.
        let page =
            array(&run(&mut con, &["PRESENCE.LIST", "SCOPE", &chat, "WITHDEVICES"]).unwrap());
        let rows = array(&page[1]);
        assert_eq!(rows.len(), 1);
        let row = array(&rows[0]);
        assert_eq!(text(&row[0]), user);
        let devices: Vec<(String, Value)> = array(&row[3])
            .iter()
            .map(|pair| {
                let pair = array(pair);
                (text(&pair[0]), pair[1].clone())
            })
            .collect();
        assert_eq!(
            devices,
            vec![
                ("laptop".to_owned(), Value::Nil),
                (
                    "phone".to_owned(),
                    Value::BulkString(data.as_bytes().to_vec())
                )
            ]
        );
        assert_eq!((count(&mut con, &chat), count(&mut con, &call)), (1, 1));
        // In the room while any device is.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.LEAVE", &user, "phone", &chat]).unwrap()),
            1
        );
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.LEAVE", &user, "phone", &chat]).unwrap()),
            0
        );
        assert_eq!(count(&mut con, &chat), 1);
        run(&mut con, &["PRESENCE.OFFLINE", &user, "laptop"]).unwrap();
        assert_eq!((count(&mut con, &chat), count(&mut con, &call)), (0, 0));
        assert!(array(&run(&mut con, &["PRESENCE.ROOMS", &user]).unwrap()).is_empty());
        let fields: Vec<String> =
            texts(&run(&mut con, &["HKEYS", &format!("presence:{{{user}}}")]).unwrap());
        assert!(!fields.iter().any(|f| f.starts_with("room:")), "{fields:?}");
        // Refusals change nothing.
        assert_refused(
            &mut con,
            &[
                (
                    vec!["PRESENCE.JOIN", &user, "laptop", &chat],
                    "ERR device is not connected",
                ),
                (
                    vec!["PRESENCE.JOIN", &user, "phone", ""],
                    "ERR room must be 1 to 128 bytes, got 0",
                ),
                (
                    vec!["PRESENCE.JOIN", &user, "phone", &chat, "DATA", "[1]"],
                    "ERR DATA must be a JSON object, not another JSON value",
                ),
                (
                    vec!["PRESENCE.TYPING", &user, "phone", &chat],
                    "ERR device is not in room (PRESENCE.JOIN it first)",
                ),
                (
                    vec!["PRESENCE.TYPING", &user, "tablet", "NONE"],
                    "ERR device is not connected",
                ),
            ],
        );
        assert!(array(&run(&mut con, &["PRESENCE.ROOMS", &user]).unwrap()).is_empty());
    });
}

#[test]
fn max_rooms_bounds_each_device() {
    on_each_server(&["max-rooms", "3"], |srv| {
        let mut con = srv.con();
        let user = unique("many");
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "web"]).unwrap();
        let rooms: Vec<String> = (0..4).map(|i| unique(&format!("r{i}"))).collect();
        for room in &rooms[..3] {
            run(&mut con, &["PRESENCE.JOIN", &user, "phone", room]).unwrap();
        }
        assert_eq!(
            run(&mut con, &["PRESENCE.JOIN", &user, "phone", &rooms[3]]).unwrap_err(),
            "ERR device is already in 3 rooms (max-rooms)"
        );
        // Per device: another device has its own.
        run(&mut con, &["PRESENCE.JOIN", &user, "web", &rooms[3]]).unwrap();
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.ROOMS", &user]).unwrap()).len(),
            4
        );
    });
}

#[test]
fn a_timeout_takes_the_devices_rooms_and_typing_with_it() {
    on_each_server(&["sweep-interval", "20"], |srv| {
        let mut con = srv.con();
        let (user, room) = (unique("gone"), unique("room"));
        let mut events = room_events(srv, &[&room]);
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone", "TTL", "300"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "laptop"]).unwrap();
        run(&mut con, &["PRESENCE.JOIN", &user, "phone", &room]).unwrap();
        run(&mut con, &["PRESENCE.JOIN", &user, "laptop", &room]).unwrap();
        run(&mut con, &["PRESENCE.TYPING", &user, "phone", &room]).unwrap();
        let typers = array(&run(&mut con, &["PRESENCE.TYPERS", &room]).unwrap());
        assert_eq!(
            typers.iter().map(texts).collect::<Vec<_>>(),
            vec![vec![user.clone(), "phone".to_owned()]]
        );
        let got = events.take(5, WAIT);
        assert_eq!(
            summary(&got),
            vec![
                row("join", "join", &user, "phone", 1),
                row("join", "join", &user, "laptop", 2),
                row("typing", "typing", &user, "phone", 2),
                // The sweep removes the phone at its deadline: it leaves, and stops typing.
                row("leave", "timeout", &user, "phone", 1),
                row("typing", "timeout", &user, "phone", 1),
            ]
        );
        assert_eq!(got[2].payload["typing"], true);
        assert_eq!(got[4].payload["typing"], false);
        let joined = got[0].int("ts");
        assert!(
            got[3].int("ts") >= joined + 300 - 50,
            "at the deadline: {:?}",
            got[3].payload
        );
        assert!(array(&run(&mut con, &["PRESENCE.TYPERS", &room]).unwrap()).is_empty());
        assert!(array(&run(&mut con, &["PRESENCE.ROOMS", &user, "phone"]).unwrap()).is_empty());
        assert_eq!(
            texts(&run(&mut con, &["PRESENCE.ROOMS", &user]).unwrap()),
            vec![room.clone()]
        );
        assert_eq!(count(&mut con, &room), 1, "the laptop is still there");
        run(&mut con, &["PRESENCE.OFFLINE", &user, "laptop"]).unwrap();
        assert_eq!(
            summary(&events.take(1, WAIT)),
            vec![row("leave", "disconnect", &user, "laptop", 0)]
        );
        assert_eq!(count(&mut con, &room), 0);
    });
}

#[test]
fn room_events_reach_only_that_rooms_subscribers() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let (ann, bob) = (unique("ann"), unique("bob"));
        let (red, blue) = (unique("red"), unique("blue"));
        let mut red_events = room_events(srv, &[&red]);
        let mut blue_events = room_events(srv, &[&blue]);
        run(&mut con, &["PRESENCE.ONLINE", &ann, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &bob, "web"]).unwrap();
        run(
            &mut con,
            &[
                "PRESENCE.JOIN",
                &ann,
                "phone",
                &red,
                "DATA",
                r#"{"seat":1}"#,
            ],
        )
        .unwrap();
        run(&mut con, &["PRESENCE.JOIN", &bob, "web", &blue]).unwrap();
        run(
            &mut con,
            &["PRESENCE.STATUS", &ann, "busy", "MESSAGE", "Call"],
        )
        .unwrap();
        run(&mut con, &["PRESENCE.TYPING", &bob, "web", &blue]).unwrap();
        run(&mut con, &["PRESENCE.ACTIVITY", &bob, "web"]).unwrap();
        run(&mut con, &["PRESENCE.LEAVE", &bob, "web", &blue]).unwrap();
        let red_got = red_events.take(2, WAIT);
        assert_eq!(
            summary(&red_got),
            vec![
                row("join", "join", &ann, "phone", 1),
                row("update", "manual", &ann, "", 1)
            ]
        );
        assert_eq!(red_got[0].payload["data"], serde_json::json!({"seat": 1}));
        assert_eq!(red_got[0].str("room"), red);
        assert_eq!(
            (red_got[1].str("status"), red_got[1].str("message")),
            ("busy", "Call")
        );
        assert!(red_got[0].int("seq") < red_got[1].int("seq"));
        let blue_got = blue_events.take(4, WAIT);
        assert_eq!(
            summary(&blue_got),
            vec![
                row("join", "join", &bob, "web", 1),
                row("typing", "typing", &bob, "web", 1),
                // The message was sent.
                row("typing", "active", &bob, "web", 1),
                row("leave", "leave", &bob, "web", 0),
            ]
        );
        // Nothing of the other room, and nothing of invisible users.
        run(&mut con, &["PRESENCE.STATUS", &bob, "invisible"]).unwrap();
        run(&mut con, &["PRESENCE.JOIN", &bob, "web", &red]).unwrap();
        red_events.assert_quiet(Duration::from_millis(300));
        blue_events.assert_quiet(Duration::from_millis(100));
        assert_eq!(count(&mut con, &red), 1, "invisible users are not listed");
    });
}

#[test]
fn typing_stops_by_command_by_activity_and_at_its_bound() {
    on_each_server(&["typing-timeout", "400", "sweep-interval", "20"], |srv| {
        let mut con = srv.con();
        let (user, room) = (unique("typist"), unique("room"));
        let mut events = room_events(srv, &[&room]);
        run(
            &mut con,
            &["PRESENCE.ONLINE", &user, "phone", "SCOPE", &room],
        )
        .unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "laptop"]).unwrap();
        // A scope is a room the user is in with every device: both may type in it.
        run(&mut con, &["PRESENCE.TYPING", &user, "phone", &room]).unwrap();
        run(&mut con, &["PRESENCE.TYPING", &user, "laptop", &room]).unwrap();
        let typers = |con: &mut Connection| -> BTreeSet<String> {
            array(&run(con, &["PRESENCE.TYPERS", &room]).unwrap())
                .iter()
                .map(|pair| texts(pair)[1].clone())
                .collect()
        };
        assert_eq!(typers(&mut con).len(), 2);
        run(&mut con, &["PRESENCE.TYPING", &user, "laptop", "NONE"]).unwrap();
        assert_eq!(typers(&mut con), BTreeSet::from(["phone".to_owned()]));
        // ACTIVITY without a device: every device's message was sent.
        run(&mut con, &["PRESENCE.ACTIVITY", &user]).unwrap();
        assert!(typers(&mut con).is_empty());
        run(&mut con, &["PRESENCE.TYPING", &user, "phone", &room]).unwrap();
        // The scope's join, then the typing.
        let got = events.take(7, WAIT);
        assert_eq!(got[0].str("event"), "join");
        let got = &got[1..];
        let stops: Vec<(String, bool)> = got
            .iter()
            .filter(|m| m.str("event") == "typing")
            .map(|m| {
                (
                    m.str("reason").to_owned(),
                    m.payload["typing"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            stops,
            vec![
                ("typing".to_owned(), true),
                ("typing".to_owned(), true),
                ("stopped".to_owned(), false),
                ("active".to_owned(), false),
                ("typing".to_owned(), true),
                ("timeout".to_owned(), false),
            ]
        );
        let (started, ended) = (got[4].int("ts"), got[5].int("ts"));
        assert_eq!(ended - started, 400, "the bound is typing-timeout exactly");
        assert!(
            got[5].received - ended < 300,
            "announced within the sweep's bound"
        );
        assert!(typers(&mut con).is_empty());
    });
}

#[test]
fn a_room_cursor_stays_valid_while_members_come_and_go() {
    on_each_server(&["away-after", "0"], |srv| {
        let mut con = srv.con();
        let room = unique("big");
        let users: Vec<String> = (0..30).map(|i| unique(&format!("m{i}"))).collect();
        for user in &users {
            run(&mut con, &["PRESENCE.ONLINE", user, "d"]).unwrap();
            run(&mut con, &["PRESENCE.JOIN", user, "d", &room]).unwrap();
            // Distinct activity, so the order is known: the last joined is the most recent.
            std::thread::sleep(Duration::from_millis(2));
            run(&mut con, &["PRESENCE.ACTIVITY", user]).unwrap();
        }
        let reply =
            array(&run(&mut con, &["PRESENCE.LIST", "SCOPE", &room, "LIMIT", "4"]).unwrap());
        let first: Vec<String> = array(&reply[1])
            .iter()
            .map(|r| text(&array(r)[0]))
            .collect();
        let expected_first: Vec<String> = users.iter().rev().take(4).cloned().collect();
        assert_eq!(first, expected_first);
        // Churn between pages: some leave the room, some go offline, newcomers join, one member
        // further down becomes active (it moves ahead of the cursor).
        let newcomer = unique("new");
        run(&mut con, &["PRESENCE.ONLINE", &newcomer, "d"]).unwrap();
        run(&mut con, &["PRESENCE.JOIN", &newcomer, "d", &room]).unwrap();
        run(&mut con, &["PRESENCE.LEAVE", &users[20], "d", &room]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &users[10], "d"]).unwrap();
        run(&mut con, &["PRESENCE.ACTIVITY", &users[5]]).unwrap();
        let mut cursor = text(&reply[0]);
        let mut rest = Vec::new();
        while cursor != "0" {
            let reply = array(
                &run(
                    &mut con,
                    &[
                        "PRESENCE.LIST",
                        "SCOPE",
                        &room,
                        "LIMIT",
                        "4",
                        "CURSOR",
                        &cursor,
                    ],
                )
                .unwrap(),
            );
            rest.extend(array(&reply[1]).iter().map(|r| text(&array(r)[0])));
            cursor = text(&reply[0]);
        }
        let expected: Vec<String> = users[..26]
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| ![5, 10, 20].contains(i))
            .map(|(_, u)| u.clone())
            .collect();
        assert_eq!(
            rest, expected,
            "no repeat, no skip of members present throughout"
        );
        assert_eq!(count(&mut con, &room), 29);
        assert_eq!(members(&mut con, &room, 1000).len(), 29);
    });
}

#[test]
fn the_reconciliation_keeps_the_members_that_devices_brought_into_a_room() {
    on_each_server(&["sweep-interval", "10"], |srv| {
        if skip_on_external("waits for whole reconciliation passes of the server") {
            return;
        }
        let mut con = srv.con();
        let room = unique("kept");
        let users: Vec<String> = (0..5).map(|i| unique(&format!("k{i}"))).collect();
        for user in &users {
            run(&mut con, &["PRESENCE.ONLINE", user, "d"]).unwrap();
            run(&mut con, &["PRESENCE.JOIN", user, "d", &room]).unwrap();
        }
        let (passes, repairs) = (
            info_field(&mut con, "reconcile_passes"),
            info_field(&mut con, "repairs"),
        );
        // The reconciliation checks each listing entry against its member's record: a room
        // joined by a device is in the record's device fields, not among its scopes.
        assert!(wait_until(Duration::from_secs(30), || {
            info_field(&mut con, "reconcile_passes") >= passes + 2
        }));
        assert_eq!(count(&mut con, &room), 5);
        assert_eq!(members(&mut con, &room, 10).len(), 5);
        assert_eq!(
            info_field(&mut con, "repairs"),
            repairs,
            "nothing was wrong"
        );
    });
}

#[test]
fn rooms_follow_records_changed_by_other_means_than_the_module() {
    on_each_server(&["sweep-interval", "10"], |srv| {
        if skip_on_external("edits, deletes and restores records by hand") {
            return;
        }
        let mut con = srv.con();
        let (first, second) = (unique("first"), unique("second"));
        let (a, b) = (unique("a"), unique("b"));
        run(&mut con, &["PRESENCE.ONLINE", &a, "d", "SCOPE", &first]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &b, "d"]).unwrap();
        run(&mut con, &["PRESENCE.JOIN", &b, "d", &first]).unwrap();
        assert_eq!(count(&mut con, &first), 2);
        // Rooms are record fields: one written by hand puts the user in the room, one deleted
        // takes them out, at once.
        let (a_key, b_key) = (format!("presence:{{{a}}}"), format!("presence:{{{b}}}"));
        run(&mut con, &["HSET", &a_key, &format!("scope:{second}"), ""]).unwrap();
        assert_eq!(count(&mut con, &second), 1);
        assert_eq!(members(&mut con, &second, 10), [a.as_str()]);
        let b_room = format!("room:1:d:{first}");
        run(&mut con, &["HDEL", &b_key, &b_room]).unwrap();
        assert_eq!(count(&mut con, &first), 1);
        // A deleted record takes its user out of every room; restored, it puts them back.
        let dump = call(&mut con, &[b"DUMP", a_key.as_bytes()]).unwrap();
        run(&mut con, &["DEL", &a_key]).unwrap();
        assert_eq!((count(&mut con, &first), count(&mut con, &second)), (0, 0));
        let dump = bytes(&dump);
        call(&mut con, &[b"RESTORE", a_key.as_bytes(), b"0", &dump]).unwrap();
        assert_eq!((count(&mut con, &first), count(&mut con, &second)), (1, 1));
        // The listing of everyone follows within a sweep run (the user was announced offline
        // when the record went, and is listed again).
        assert!(
            wait_until(WAIT, || members(&mut con, &first, 10) == [a.as_str()]),
            "{:?}",
            members(&mut con, &first, 10)
        );
        assert_eq!(members(&mut con, &second, 10), [a.as_str()]);
    });
}
