//! Events: payloads on the global channel, the per-user sharded channel and the events stream.

mod common;

use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn summary(m: &Message) -> (String, String, String, String, i64, i64) {
    (
        m.str("status").into(),
        m.str("prev").into(),
        m.str("reason").into(),
        m.str("device").into(),
        m.int("devices"),
        m.int("seq"),
    )
}

fn s(
    status: &str,
    prev: &str,
    reason: &str,
    device: &str,
    devices: i64,
    seq: i64,
) -> (String, String, String, String, i64, i64) {
    (
        status.into(),
        prev.into(),
        reason.into(),
        device.into(),
        devices,
        seq,
    )
}

#[test]
fn status_changes_reach_the_global_and_the_users_own_channel() {
    on_each_server(&[], |srv| {
        let user = unique("ev");
        let channel = format!("presence:{{{user}}}");
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut own = Subscriber::new(srv, "SSUBSCRIBE", &[channel.as_bytes()]);
        let mut con = srv.con();
        let t0 = epoch_ms();
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "laptop"]).unwrap();
        run(&mut con, &["PRESENCE.HEARTBEAT", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "laptop"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.HEARTBEAT", &user, "tablet"]).unwrap();
        let t1 = epoch_ms();
        let from_global = global.take(3, WAIT);
        // A user's first event numbers itself after its time in microseconds; then one each.
        let first = from_global[0].int("seq");
        assert_eq!(first, from_global[0].int("ts") * 1000);
        let want = vec![
            s("online", "offline", "connect", "phone", 1, first),
            s("offline", "online", "disconnect", "phone", 0, first + 1),
            s("online", "offline", "connect", "tablet", 1, first + 2),
        ];
        let from_own = own.take(3, WAIT);
        assert_eq!(from_global.iter().map(summary).collect::<Vec<_>>(), want);
        assert_eq!(from_own.iter().map(summary).collect::<Vec<_>>(), want);
        for (g, o) in from_global.iter().zip(&from_own) {
            assert_eq!(g.payload, o.payload);
            assert_eq!(g.channel, b"presence:events");
            assert_eq!(o.channel, channel.as_bytes());
            assert_eq!(g.str("user"), user);
            let ts = g.int("ts");
            assert!(t0 <= ts && ts <= t1, "ts {ts} outside [{t0}, {t1}]");
        }
        let mut fields: Vec<&String> = from_global[0].payload.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "device",
                "devices",
                "last_seen",
                "message",
                "prev",
                "reason",
                "scopes",
                "seq",
                "status",
                "ts",
                "user"
            ]
        );
        // The offline event carries the moment the last device left.
        let g = map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap());
        assert!(from_global[1].int("last_seen") >= from_global[0].int("ts"));
        assert_eq!(from_global[2].int("last_seen"), int(&g["last_seen"]));
        global.assert_quiet(QUIET);
        own.assert_quiet(QUIET);
    });
}

#[test]
fn device_events_announce_devices_of_a_user_who_stays_online() {
    on_each_server(&["device-events", "yes"], |srv| {
        let user = unique("devev");
        let mut global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", &user, "a"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "b", "TTL", "200"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "a"]).unwrap(); // a refresh is no change
        let got = global.take(3, WAIT);
        let first = got[0].int("seq");
        let got: Vec<_> = got.iter().map(summary).collect();
        assert_eq!(
            got,
            vec![
                s("online", "offline", "connect", "a", 1, first),
                s("online", "online", "connect", "b", 2, first + 1),
                s("online", "online", "timeout", "b", 1, first + 2),
            ]
        );
        run(&mut con, &["PRESENCE.OFFLINE", &user, "a"]).unwrap();
        let last = global.take(1, WAIT);
        assert_eq!(
            summary(&last[0]),
            s("offline", "online", "disconnect", "a", 0, first + 3)
        );
    });
}

#[test]
fn an_empty_events_channel_silences_only_the_global_channel() {
    on_each_server(&["events-channel", ""], |srv| {
        let user = unique("quiet");
        let channel = format!("presence:{{{user}}}");
        let global = Subscriber::new(srv, "SUBSCRIBE", &[b"presence:events"]);
        let mut own = Subscriber::new(srv, "SSUBSCRIBE", &[channel.as_bytes()]);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        assert_eq!(own.take(1, WAIT).len(), 1);
        global.assert_quiet(QUIET);
        // Another name moves it.
        run(
            &mut con,
            &["CONFIG", "SET", "presence.events-channel", "app:presence"],
        )
        .unwrap();
        let mut moved = Subscriber::new(srv, "SUBSCRIBE", &[b"app:presence"]);
        run(&mut con, &["PRESENCE.OFFLINE", &user, "d"]).unwrap();
        assert_eq!(moved.take(1, WAIT)[0].str("status"), "offline");
    });
}

#[test]
fn users_with_braces_get_a_channel_in_their_slot() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        // The channel is named like the user's key, which the key layout documents.
        let user = format!("{{room}}{}", unique("x"));
        let keys_before: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("presence:{*")
            .query(&mut con)
            .unwrap();
        run(
            &mut con,
            &["PRESENCE.ONLINE", &user, "probe", "TTL", "100000"],
        )
        .unwrap();
        let keys_after: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("presence:{*")
            .query(&mut con)
            .unwrap();
        let key = keys_after
            .into_iter()
            .find(|k| !keys_before.contains(k) && k.ends_with(user.as_bytes()))
            .expect("the user's key");
        let mut own = Subscriber::new(srv, "SSUBSCRIBE", &[&key]);
        run(&mut con, &["PRESENCE.OFFLINE", &user, "probe"]).unwrap();
        let got = own.take(1, WAIT);
        assert_eq!(got[0].str("user"), user);
        assert_eq!(got[0].str("status"), "offline");
    });
}

#[test]
fn the_events_stream_receives_every_event() {
    on_each_server(&[], |srv| {
        let user = unique("stream");
        let stream = unique("events");
        let mut con = srv.con();
        run(
            &mut con,
            &["CONFIG", "SET", "presence.events-stream", &stream],
        )
        .unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "d"]).unwrap();
        run(&mut con, &["CONFIG", "SET", "presence.events-stream", ""]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let entries = array(&run(&mut con, &["XRANGE", &stream, "-", "+"]).unwrap());
        assert_eq!(entries.len(), 2);
        let second = map(&array(&entries[1])[1]);
        assert_eq!(text(&second["user"]), user);
        assert_eq!(text(&second["status"]), "offline");
        assert_eq!(text(&second["prev"]), "online");
        assert_eq!(text(&second["reason"]), "disconnect");
        assert_eq!(text(&second["device"]), "d");
        assert_eq!(text(&second["devices"]), "0");
        let first = map(&array(&entries[0])[1]);
        assert_eq!(
            text(&second["seq"]).parse::<i64>().unwrap(),
            text(&first["seq"]).parse::<i64>().unwrap() + 1
        );
        assert!(text(&second["ts"]).parse::<i64>().is_ok());
        assert_eq!(text(&second["last_seen"]), text(&second["ts"]));
        // Trimmed to about events-stream-maxlen.
        run(
            &mut con,
            &["CONFIG", "SET", "presence.events-stream", &stream],
        )
        .unwrap();
        run(
            &mut con,
            &["CONFIG", "SET", "presence.events-stream-maxlen", "1"],
        )
        .unwrap();
        for i in 0..300 {
            let u = format!("{user}-{i}");
            run(&mut con, &["PRESENCE.ONLINE", &u, "d"]).unwrap();
        }
        let len = int(&run(&mut con, &["XLEN", &stream]).unwrap());
        assert!(len < 300, "stream not trimmed: {len}");
        run(&mut con, &["CONFIG", "SET", "presence.events-stream", ""]).unwrap();
        run(
            &mut con,
            &["CONFIG", "SET", "presence.events-stream-maxlen", "100000"],
        )
        .unwrap();
    });
}

#[test]
fn info_reports_the_presence_section() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("info");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        run(&mut con, &["PRESENCE.HEARTBEAT", &user, "d"]).unwrap();
        let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
        let value = |name: &str| -> i64 {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("presence_{name}:")))
                .unwrap_or_else(|| panic!("{name} missing from {info}"))
                .trim()
                .parse()
                .unwrap()
        };
        for name in [
            "users_online",
            "devices_online",
            "heartbeats",
            "connects",
            "disconnects",
            "timeouts",
            "events_published",
            "sweep_runs",
            "sweep_last_us",
            "sweep_lag_ms",
        ] {
            value(name);
        }
        if !srv.is_external() {
            assert_eq!(value("users_online"), 1);
            assert_eq!(value("devices_online"), 1);
            assert_eq!(value("heartbeats"), 1);
            assert_eq!(value("connects"), 1);
            assert_eq!(value("events_published"), 1);
            assert!(wait_until(WAIT, || {
                let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
                !info.contains("presence_sweep_runs:0\r")
            }));
        }
    });
}
