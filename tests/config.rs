//! Configuration: module arguments at load time and CONFIG GET/SET at run time, with range checks.

mod common;

use common::*;

fn config_get(con: &mut redis::Connection, name: &str) -> i64 {
    let pair = array(&run(con, &["CONFIG", "GET", name]).unwrap());
    text(&pair[1]).parse().unwrap()
}

#[test]
fn defaults_are_as_documented() {
    on_each_server(&[], |srv| {
        if skip_on_external("needs servers of its own") {
            return;
        }
        let mut con = srv.con();
        assert_eq!(config_get(&mut con, "presence.timeout"), 60_000);
        assert_eq!(
            config_get(&mut con, "presence.retention"),
            30 * 24 * 3600 * 1000
        );
        assert_eq!(config_get(&mut con, "presence.max-devices"), 32);
        assert_eq!(config_get(&mut con, "presence.max-bulk"), 1000);
        assert_eq!(config_get(&mut con, "presence.sweep-interval"), 100);
        assert_eq!(config_get(&mut con, "presence.away-after"), 300_000);
        assert_eq!(config_get(&mut con, "presence.sweep-budget"), 1000);
        assert_eq!(
            config_get(&mut con, "presence.events-stream-maxlen"),
            100_000
        );
        let text_setting = |con: &mut redis::Connection, name: &str| {
            text(&array(&run(con, &["CONFIG", "GET", name]).unwrap())[1])
        };
        assert_eq!(
            text_setting(&mut con, "presence.events-channel"),
            "presence:events"
        );
        assert_eq!(text_setting(&mut con, "presence.events-stream"), "");
        assert_eq!(text_setting(&mut con, "presence.device-events"), "no");
        let e = run(
            &mut con,
            &["CONFIG", "SET", "presence.device-events", "maybe"],
        )
        .unwrap_err();
        assert!(e.starts_with("ERR"), "{e}");
    });
}

#[test]
fn module_arguments_set_the_configuration() {
    let args = [
        "timeout",
        "1000",
        "retention",
        "5000",
        "max-devices",
        "3",
        "max-bulk",
        "7",
    ];
    on_each_server(&args, |srv| {
        let mut con = srv.con();
        assert_eq!(config_get(&mut con, "presence.timeout"), 1000);
        assert_eq!(config_get(&mut con, "presence.retention"), 5000);
        assert_eq!(config_get(&mut con, "presence.max-devices"), 3);
        assert_eq!(config_get(&mut con, "presence.max-bulk"), 7);
        // The timeout is the default TTL of new devices.
        let user = unique("cfg");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let d = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        assert_eq!(int(&d["expires_at"]) - int(&d["last_heartbeat"]), 1000);
    });
}

#[test]
fn config_set_applies_at_once_and_refuses_out_of_range_values() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        run(&mut con, &["CONFIG", "SET", "presence.timeout", "2500"]).unwrap();
        let user = unique("cfgset");
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        let d = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        assert_eq!(int(&d["expires_at"]) - int(&d["last_heartbeat"]), 2500);

        for (name, bad) in [
            ("timeout", "99"),
            ("timeout", "604800001"),
            ("retention", "-1"),
            ("retention", "34560000001"),
            ("max-devices", "0"),
            ("max-devices", "1025"),
            ("max-bulk", "0"),
            ("max-bulk", "10001"),
            ("timeout", "soon"),
            ("sweep-interval", "0"),
            ("sweep-interval", "60001"),
            ("away-after", "-1"),
            ("grace", "-1"),
            ("grace", "600001"),
            ("away-after", "2592000001"),
            ("sweep-budget", "0"),
            ("sweep-budget", "1000001"),
            ("events-stream-maxlen", "0"),
            ("events-stream-maxlen", "1000000001"),
        ] {
            let full = format!("presence.{name}");
            let before = config_get(&mut con, &full);
            let e = run(&mut con, &["CONFIG", "SET", &full, bad]).unwrap_err();
            assert!(e.starts_with("ERR"), "{name} {bad}: {e}");
            assert!(
                e.contains(&full) || e.contains("argument"),
                "{name} {bad}: {e}"
            );
            assert_eq!(config_get(&mut con, &full), before);
        }
        for (name, good) in [
            ("timeout", "100"),
            ("timeout", "604800000"),
            ("retention", "0"),
            ("retention", "1000"),
            ("retention", "34560000000"),
            ("max-devices", "1024"),
            ("max-bulk", "10000"),
            ("sweep-interval", "1"),
            ("sweep-interval", "60000"),
            ("grace", "600000"),
            ("grace", "0"),
            ("away-after", "0"),
            ("away-after", "2592000000"),
            ("away-after", "300000"),
            ("sweep-budget", "1000000"),
            ("events-stream-maxlen", "1000000000"),
            ("sweep-interval", "100"),
            ("sweep-budget", "1000"),
            ("events-stream-maxlen", "100000"),
        ] {
            let full = format!("presence.{name}");
            run(&mut con, &["CONFIG", "SET", &full, good]).unwrap();
            assert_eq!(config_get(&mut con, &full).to_string(), good);
        }
        if srv.is_external() {
            run(&mut con, &["CONFIG", "SET", "presence.timeout", "60000"]).unwrap();
            run(
                &mut con,
                &["CONFIG", "SET", "presence.retention", "2592000000"],
            )
            .unwrap();
            run(&mut con, &["CONFIG", "SET", "presence.max-devices", "32"]).unwrap();
            run(&mut con, &["CONFIG", "SET", "presence.max-bulk", "1000"]).unwrap();
        }
    });
}

#[test]
fn string_settings_refuse_a_nul_byte_and_keep_their_value() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        for name in ["presence.events-channel", "presence.events-stream"] {
            let before: Vec<Vec<u8>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query(&mut con)
                .unwrap();
            let e = call(&mut con, &[b"CONFIG", b"SET", name.as_bytes(), b"a\0b"]).unwrap_err();
            assert!(e.contains("NUL"), "{name}: {e}");
            let after: Vec<Vec<u8>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query(&mut con)
                .unwrap();
            assert_eq!(after, before, "{name}");
        }
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
    });
}

#[test]
fn the_events_stream_is_refused_in_cluster_mode() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        // A lone cluster-enabled node is in cluster mode, which is all this needs.
        let node = Server::start(kind, &[], &["--cluster-enabled", "yes"]);
        let mut con = node.con();
        let e = run(
            &mut con,
            &["CONFIG", "SET", "presence.events-stream", "events"],
        )
        .unwrap_err();
        assert!(e.contains("not available in cluster mode"), "{kind:?}: {e}");
        run(&mut con, &["CONFIG", "SET", "presence.events-stream", ""]).unwrap();
        match Server::try_start(
            kind,
            &["events-stream", "events"],
            &["--cluster-enabled", "yes"],
        ) {
            Ok(_) => panic!("{kind:?}: loaded with events-stream in cluster mode"),
            Err(log) => assert!(
                log.contains("not available in cluster mode"),
                "{kind:?}: {log}"
            ),
        }
    }
}

#[test]
fn out_of_range_module_arguments_refuse_to_load() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        for args in [
            &["timeout", "50"][..],
            &["max-devices", "0"],
            &["retention", "abc"],
        ] {
            let outcome = Server::try_start(kind, args, &[]);
            assert!(outcome.is_err(), "{kind:?} loaded with {args:?}");
        }
    }
}
