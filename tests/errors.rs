//! Bad input: every refusal is an `ERR` reply that names the problem and changes nothing.

mod common;

use common::*;

/// Each case: the command, and a fragment the error must contain.
fn cases(user: &str, long: &str, big_meta: &str) -> Vec<(Vec<String>, &'static str)> {
    let c = |args: &[&str], fragment: &'static str| {
        (
            args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            fragment,
        )
    };
    vec![
        // Arity.
        c(&["PRESENCE.ONLINE", user], "wrong number of arguments"),
        c(&["PRESENCE.HEARTBEAT", user], "wrong number of arguments"),
        c(&["PRESENCE.OFFLINE", user], "wrong number of arguments"),
        c(
            &["PRESENCE.OFFLINE", user, "d", "extra"],
            "wrong number of arguments",
        ),
        c(&["PRESENCE.GET"], "wrong number of arguments"),
        c(
            &["PRESENCE.GET", user, "extra"],
            "unknown option 'extra' (expected VIEWER)",
        ),
        c(&["PRESENCE.GET", user, "VIEWER"], "VIEWER needs a value"),
        c(
            &["PRESENCE.BULK", "VIEWER", "v"],
            "wrong number of arguments",
        ),
        c(&["PRESENCE.DEVICES"], "wrong number of arguments"),
        c(&["PRESENCE.BULK"], "wrong number of arguments"),
        // Options.
        c(
            &["PRESENCE.ONLINE", user, "d", "FOO", "1"],
            "unknown option 'FOO'",
        ),
        c(&["PRESENCE.ONLINE", user, "d", "TTL"], "TTL needs a value"),
        c(
            &["PRESENCE.ONLINE", user, "d", "TTL", "500", "ttl", "600"],
            "TTL given more than once",
        ),
        c(
            &["PRESENCE.HEARTBEAT", user, "d", "SCOPE", "s"],
            "unknown option 'SCOPE'",
        ),
        // TTL values.
        c(
            &["PRESENCE.ONLINE", user, "d", "TTL", "abc"],
            "TTL must be an integer from 100 to 604800000",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "TTL", "99"],
            "TTL must be an integer from 100",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "TTL", "-1"],
            "TTL must be an integer from 100",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "TTL", "604800001"],
            "TTL must be an integer from 100",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "TTL", "99999999999999999999"],
            "TTL must be an integer",
        ),
        c(
            &["PRESENCE.HEARTBEAT", user, "d", "TTL", "1.5"],
            "TTL must be an integer",
        ),
        // Ids.
        c(
            &["PRESENCE.ONLINE", "", "d"],
            "user id must be 1 to 512 bytes, got 0",
        ),
        c(
            &["PRESENCE.ONLINE", user, ""],
            "device id must be 1 to 512 bytes, got 0",
        ),
        c(
            &["PRESENCE.ONLINE", long, "d"],
            "user id must be 1 to 512 bytes, got 513",
        ),
        c(
            &["PRESENCE.HEARTBEAT", user, long],
            "device id must be 1 to 512 bytes, got 513",
        ),
        c(
            &["PRESENCE.OFFLINE", user, long],
            "device id must be 1 to 512 bytes",
        ),
        c(&["PRESENCE.GET", ""], "user id must be 1 to 512 bytes"),
        c(
            &["PRESENCE.DEVICES", long],
            "user id must be 1 to 512 bytes",
        ),
        c(
            &["PRESENCE.BULK", user, ""],
            "user id must be 1 to 512 bytes",
        ),
        // META.
        c(
            &["PRESENCE.ONLINE", user, "d", "META", "[1,2]"],
            "META must be a JSON object",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "META", "\"text\""],
            "META must be a JSON object",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "META", "{\"a\":"],
            "META is not valid JSON",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "META", ""],
            "META is not valid JSON",
        ),
        c(
            &["PRESENCE.ONLINE", user, "d", "META", big_meta],
            "META must be at most 4096 bytes",
        ),
    ]
}

#[test]
fn every_bad_input_is_an_err_that_names_it_and_changes_nothing() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("bad");
        run(
            &mut con,
            &["PRESENCE.ONLINE", &user, "d", "META", r#"{"keep":true}"#],
        )
        .unwrap();
        let long = "x".repeat(513);
        let big_meta = format!("{{\"k\":\"{}\"}}", "x".repeat(4096));
        let before = snapshot_for(&mut con, &user);
        assert_refused(&mut con, &cases(&user, &long, &big_meta));
        assert_eq!(snapshot_for(&mut con, &user), before);
        // The server is still there and the user untouched.
        let g = map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap());
        assert_eq!(int(&g["devices"]), 1);
    });
}

#[test]
fn bulk_is_limited_by_max_bulk() {
    on_each_server(&["max-bulk", "3"], |srv| {
        let mut con = srv.con();
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.BULK", "a", "b", "c"]).unwrap()).len(),
            3
        );
        let e = run(&mut con, &["PRESENCE.BULK", "a", "b", "c", "d"]).unwrap_err();
        assert_eq!(e, "ERR too many users: 4 given, max-bulk is 3");
        run(&mut con, &["CONFIG", "SET", "presence.max-bulk", "4"]).unwrap();
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.BULK", "a", "b", "c", "d"]).unwrap()).len(),
            4
        );
    });
}

#[test]
fn largest_valid_values_are_accepted() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = format!("{}{}", unique("u"), "y".repeat(600));
        let user = &user[..512];
        let device = "z".repeat(512);
        let meta = format!("{{\"k\":\"{}\"}}", "x".repeat(4096 - 8));
        assert_eq!(meta.len(), 4096);
        let reply = run(
            &mut con,
            &[
                "PRESENCE.ONLINE",
                user,
                &device,
                "TTL",
                "604800000",
                "META",
                &meta,
            ],
        );
        assert_eq!(int(&reply.unwrap()), 1);
        assert_eq!(
            int(&run(
                &mut con,
                &["PRESENCE.HEARTBEAT", user, &device, "TTL", "100"]
            )
            .unwrap()),
            1
        );
        let d = map(&array(&run(&mut con, &["PRESENCE.DEVICES", user]).unwrap())[0]);
        assert_eq!(text(&d["meta"]), meta);
    });
}

#[test]
fn other_databases_are_refused() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        run(&mut con, &["SELECT", "1"]).unwrap();
        for cmd in [
            &["PRESENCE.ONLINE", "u", "d"][..],
            &["PRESENCE.GET", "u"],
            &["PRESENCE.BULK", "u"],
            &["PRESENCE.SWEEP"],
        ] {
            let e = run(&mut con, cmd).unwrap_err();
            assert_eq!(
                e,
                "ERR presence data lives in database 0, this client selected 1 (SELECT 0)"
            );
        }
        assert_eq!(int(&run(&mut con, &["DBSIZE"]).unwrap()), 0);
        run(&mut con, &["SELECT", "0"]).unwrap();
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", &unique("u"), "d"]).unwrap()),
            1
        );
    });
}
