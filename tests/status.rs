//! Rich status on real servers: auto-away and activity, manual statuses with messages and
//! durations, invisible, and the events each publishes.

mod common;

use common::*;
use redis::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn get(con: &mut redis::Connection, user: &str) -> std::collections::BTreeMap<String, Value> {
    map(&run(con, &["PRESENCE.GET", user]).unwrap())
}

fn summary(m: &Message) -> (String, String, String) {
    (
        m.str("status").into(),
        m.str("prev").into(),
        m.str("reason").into(),
    )
}

fn s(status: &str, prev: &str, reason: &str) -> (String, String, String) {
    (status.into(), prev.into(), reason.into())
}

#[test]
fn an_idle_user_goes_away_and_activity_brings_them_back() {
    on_each_server(&["away-after", "300", "sweep-interval", "20"], |srv| {
        let user = unique("idle");
        let channel = format!("presence:{{{user}}}");
        let mut own = Subscriber::new(srv, "SSUBSCRIBE", &[channel.as_bytes()]);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let active = int(&get(&mut con, &user)["last_active"]);
        // Heartbeats keep the device connected but are not activity.
        run(&mut con, &["PRESENCE.HEARTBEAT", &user, "d"]).unwrap();
        assert!(wait_until(WAIT, || text(&get(&mut con, &user)["status"]) == "away"));
        let got = own.take(2, WAIT);
        assert_eq!(
            got.iter().map(summary).collect::<Vec<_>>(),
            vec![
                s("online", "offline", "connect"),
                s("away", "online", "idle")
            ]
        );
        assert_eq!(got[1].int("ts"), active + 300);
        assert_eq!(int(&get(&mut con, &user)["since"]), active + 300);

        assert_eq!(
            run(&mut con, &["PRESENCE.ACTIVITY", &user]).unwrap(),
            Value::Okay
        );
        assert_eq!(
            summary(&own.take(1, WAIT)[0]),
            s("online", "away", "active")
        );
        assert!(int(&get(&mut con, &user)["last_active"]) > active);
        assert!(wait_until(WAIT, || text(&get(&mut con, &user)["status"]) == "away"));
        assert_eq!(summary(&own.take(1, WAIT)[0]), s("away", "online", "idle"));

        // HEARTBEAT ACTIVE is a heartbeat and activity at once.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.HEARTBEAT", &user, "d", "ACTIVE"]).unwrap()),
            1
        );
        assert_eq!(
            summary(&own.take(1, WAIT)[0]),
            s("online", "away", "active")
        );
        assert_eq!(text(&get(&mut con, &user)["status"]), "online");
    });
}

#[test]
fn a_new_away_after_applies_at_once() {
    on_each_server(&["away-after", "0", "sweep-interval", "20"], |srv| {
        let user = unique("later");
        let channel = format!("presence:{{{user}}}");
        let mut own = Subscriber::new(srv, "SSUBSCRIBE", &[channel.as_bytes()]);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let active = int(&get(&mut con, &user)["last_active"]);
        assert_eq!(
            summary(&own.take(1, WAIT)[0]),
            s("online", "offline", "connect")
        );
        // Auto-away was off; turned on, it finds the user idle since their last activity.
        run(&mut con, &["CONFIG", "SET", "presence.away-after", "300"]).unwrap();
        let got = own.take(1, WAIT);
        assert_eq!(got.len(), 1, "no idle event");
        assert_eq!(summary(&got[0]), s("away", "online", "idle"));
        assert_eq!(got[0].int("ts"), active + 300);
        // Announced within a second: the change made the sweep look at every slot at once.
        let late = got[0].received - (active + 300);
        assert!(late < 1000, "announced {late} ms late");
        if srv.is_external() {
            run(&mut con, &["CONFIG", "SET", "presence.away-after", "0"]).unwrap();
        }
    });
}

#[test]
fn a_manual_status_carries_a_message_and_ends_on_its_own() {
    on_each_server(&["away-after", "0", "sweep-interval", "20"], |srv| {
        let user = unique("busy");
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let reply = run(
            &mut con,
            &[
                "PRESENCE.STATUS",
                &user,
                "BUSY",
                "MESSAGE",
                "In a meeting",
                "FOR",
                "300",
            ],
        );
        assert_eq!(reply.unwrap(), Value::Okay);
        let g = get(&mut con, &user);
        assert_eq!(text(&g["status"]), "busy");
        assert_eq!(text(&g["message"]), "In a meeting");
        assert_eq!(int(&g["manual"]), 1);
        assert!(wait_until(WAIT, || text(&get(&mut con, &user)["status"]) == "online"));
        let got = global.take(3, WAIT);
        assert_eq!(
            got.iter().map(summary).collect::<Vec<_>>(),
            vec![
                s("online", "offline", "connect"),
                s("busy", "online", "manual"),
                s("online", "busy", "expired")
            ]
        );
        let g = get(&mut con, &user);
        assert_eq!((g["message"].clone(), int(&g["manual"])), (Value::Nil, 0));
        // auto clears a manual status at once.
        run(&mut con, &["PRESENCE.STATUS", &user, "dnd"]).unwrap();
        run(&mut con, &["PRESENCE.STATUS", &user, "auto"]).unwrap();
        assert_eq!(
            global.take(2, WAIT).iter().map(summary).collect::<Vec<_>>(),
            vec![s("dnd", "online", "manual"), s("online", "dnd", "manual")]
        );
    });
}

#[test]
fn a_manual_status_is_kept_while_offline_and_applies_on_return() {
    on_each_server(&[], |srv| {
        let user = unique("later");
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = srv.con();
        run(
            &mut con,
            &["PRESENCE.STATUS", &user, "dnd", "MESSAGE", "Focus"],
        )
        .unwrap();
        let g = get(&mut con, &user);
        assert_eq!(
            (text(&g["status"]), int(&g["manual"])),
            ("offline".into(), 1)
        );
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let got = global.take(1, WAIT);
        assert_eq!(summary(&got[0]), s("dnd", "offline", "connect"));
        assert_eq!(text(&get(&mut con, &user)["status"]), "dnd");
        global.assert_quiet(Duration::from_millis(200));
    });
}

#[test]
fn invisible_users_look_offline_to_everyone_else() {
    on_each_server(&["device-events", "yes"], |srv| {
        let user = unique("ghost");
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", &user, "a"]).unwrap();
        run(&mut con, &["PRESENCE.STATUS", &user, "invisible"]).unwrap();
        let got = global.take(2, WAIT);
        assert_eq!(summary(&got[1]), s("offline", "online", "manual"));
        assert_eq!(got[1].int("devices"), 1);
        // Devices come and go unseen; the trusted view (no VIEWER) shows the truth.
        run(&mut con, &["PRESENCE.ONLINE", &user, "b"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "b"]).unwrap();
        assert_eq!(text(&get(&mut con, &user)["status"]), "invisible");
        let row = array(&array(&run(&mut con, &["PRESENCE.BULK", &user]).unwrap())[0]);
        assert_eq!(text(&row[1]), "invisible");
        run(&mut con, &["PRESENCE.STATUS", &user, "auto"]).unwrap();
        // The next event is coming back: nothing was published for the devices meanwhile.
        let back = global.take(1, WAIT);
        assert_eq!(summary(&back[0]), s("online", "offline", "manual"));
        assert_eq!(back[0].int("seq"), got[1].int("seq") + 1);
    });
}

#[test]
fn bad_status_input_is_refused_and_changes_nothing() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("badstatus");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let before = snapshot_for(&mut con, &user);
        let long = "m".repeat(257);
        assert_refused(
            &mut con,
            &[
                (vec!["PRESENCE.STATUS", &user], "wrong number of arguments"),
                (
                    vec!["PRESENCE.STATUS", &user, "sleeping"],
                    "unknown status 'sleeping'",
                ),
                (
                    vec!["PRESENCE.STATUS", &user, "offline"],
                    "offline cannot be set",
                ),
                (
                    vec!["PRESENCE.STATUS", &user, "away", "MESSAGE", &long],
                    "at most 256 bytes",
                ),
                (
                    vec!["PRESENCE.STATUS", &user, "away", "FOR", "0"],
                    "FOR must be an integer from 1",
                ),
                (
                    vec!["PRESENCE.STATUS", &user, "away", "FOR", "-5"],
                    "FOR must be",
                ),
                (
                    vec!["PRESENCE.STATUS", &user, "away", "FOR", "2592000001"],
                    "FOR must be",
                ),
                (
                    vec!["PRESENCE.STATUS", &user, "auto", "MESSAGE", "x"],
                    "cannot be given with auto",
                ),
                (
                    vec!["PRESENCE.STATUS", &user, "away", "UNTIL", "1"],
                    "unknown option 'UNTIL'",
                ),
                (vec!["PRESENCE.ACTIVITY"], "wrong number of arguments"),
                (
                    vec!["PRESENCE.ACTIVITY", &user, "nope"],
                    "device is not connected",
                ),
                (
                    vec!["PRESENCE.ACTIVITY", &user, "d", "x"],
                    "wrong number of arguments",
                ),
                (
                    vec!["PRESENCE.HEARTBEAT", &user, "d", "ACTIVE", "ACTIVE"],
                    "ACTIVE given more than once",
                ),
            ],
        );
        assert_eq!(snapshot_for(&mut con, &user), before);
    });
}

#[test]
fn a_context_is_open_on_a_connected_device_until_it_leaves() {
    on_each_server(&["sweep-interval", "20"], |srv| {
        let mut con = srv.con();
        let user = unique("ctx");
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone", "TTL", "300"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "web"]).unwrap();
        let incontext = |con: &mut redis::Connection, c: &str| {
            int(&run(con, &["PRESENCE.INCONTEXT", &user, c]).unwrap())
        };
        assert_eq!(incontext(&mut con, "chat:42"), 0);
        assert_eq!(
            run(&mut con, &["PRESENCE.CONTEXT", &user, "phone", "chat:42"]).unwrap(),
            Value::Okay
        );
        run(&mut con, &["PRESENCE.CONTEXT", &user, "web", "settings"]).unwrap();
        assert_eq!(incontext(&mut con, "chat:42"), 1);
        assert_eq!(incontext(&mut con, "chat:7"), 0);
        let rows = array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap());
        let contexts: Vec<Value> = rows.iter().map(|r| map(r)["context"].clone()).collect();
        assert_eq!(
            contexts,
            vec![
                Value::BulkString(b"chat:42".to_vec()),
                Value::BulkString(b"settings".to_vec())
            ]
        );
        // NONE closes it; a device that leaves or times out takes its context with it.
        run(&mut con, &["PRESENCE.CONTEXT", &user, "web", "NONE"]).unwrap();
        assert_eq!(incontext(&mut con, "settings"), 0);
        assert!(wait_until(WAIT, || incontext(&mut con, "chat:42") == 0));
        assert_eq!(int(&get(&mut con, &user)["devices"]), 1);
        // A device that is not connected has no context to set.
        let e = run(&mut con, &["PRESENCE.CONTEXT", &user, "phone", "chat:42"]).unwrap_err();
        assert_eq!(e, "ERR device is not connected");
        let e = run(&mut con, &["PRESENCE.CONTEXT", &user, "web", ""]).unwrap_err();
        assert!(e.contains("context id must be 1 to 512 bytes"), "{e}");
        let e = run(&mut con, &["PRESENCE.INCONTEXT", &user]).unwrap_err();
        assert!(e.contains("wrong number of arguments"), "{e}");
    });
}

#[test]
fn a_user_back_within_grace_never_flickers() {
    on_each_server(&["grace", "300", "sweep-interval", "20"], |srv| {
        let user = unique("flap");
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let since = int(&get(&mut con, &user)["since"]);
        // A page refresh: the device leaves and comes back within the grace period.
        run(&mut con, &["PRESENCE.OFFLINE", &user, "d"]).unwrap();
        assert_eq!(text(&get(&mut con, &user)["status"]), "online");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        assert_eq!(int(&get(&mut con, &user)["since"]), since);
        // Now it leaves for good: offline when the grace period ends, as of the departure.
        run(&mut con, &["PRESENCE.OFFLINE", &user, "d"]).unwrap();
        let left = int(&get(&mut con, &user)["last_seen"]);
        assert!(wait_until(WAIT, || text(&get(&mut con, &user)["status"]) == "offline"));
        let got = global.take(2, WAIT);
        assert_eq!(
            got.iter().map(summary).collect::<Vec<_>>(),
            vec![
                s("online", "offline", "connect"),
                s("offline", "online", "disconnect")
            ]
        );
        assert_eq!(got[1].int("last_seen"), left);
        assert_eq!(got[1].int("ts"), left + 300);
        assert_eq!(
            got[1].int("seq"),
            got[0].int("seq") + 1,
            "nothing was published for the refresh"
        );
    });
}
