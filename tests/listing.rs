//! Scopes and online listings on real servers: PRESENCE.ONLINE ... SCOPE, PRESENCE.LIST pages and
//! cursors, PRESENCE.COUNT, and how both follow status, departures, timeouts, replicas and restarts.

mod common;

use common::*;
use redis::{Connection, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// A LIST reply: the next cursor and the rows as (user, status, last_active).
fn list(con: &mut Connection, args: &[&str]) -> (String, Vec<(String, String, i64)>) {
    let mut argv = vec!["PRESENCE.LIST"];
    argv.extend_from_slice(args);
    let reply = array(&run(con, &argv).unwrap());
    let rows = array(&reply[1])
        .iter()
        .map(|row| {
            let row = array(row);
            (text(&row[0]), text(&row[1]), int(&row[2]))
        })
        .collect();
    (text(&reply[0]), rows)
}

/// Every user of a listing, page after page.
fn list_all(con: &mut Connection, scope: &str, limit: usize) -> Vec<String> {
    let limit = limit.to_string();
    let mut cursor = "0".to_string();
    let mut users = Vec::new();
    loop {
        let (next, rows) = list(con, &["SCOPE", scope, "LIMIT", &limit, "CURSOR", &cursor]);
        users.extend(rows.into_iter().map(|(user, _, _)| user));
        if next == "0" {
            return users;
        }
        cursor = next;
    }
}

fn count(con: &mut Connection, scope: Option<&str>) -> i64 {
    match scope {
        Some(scope) => int(&run(con, &["PRESENCE.COUNT", "SCOPE", scope]).unwrap()),
        None => int(&run(con, &["PRESENCE.COUNT"]).unwrap()),
    }
}

/// Connects `users` in order, each in `scope`, so each is more recently active than the last.
fn connect_in_order(con: &mut Connection, users: &[String], scope: &str) {
    for user in users {
        run(con, &["PRESENCE.ONLINE", user, "d", "SCOPE", scope]).unwrap();
        // Distinct activity times make the expected order unambiguous.
        let active = int(&map(&run(con, &["PRESENCE.GET", user]).unwrap())["last_active"]);
        assert!(wait_until(WAIT, || epoch_ms() > active));
    }
}

#[test]
fn list_pages_a_scope_most_recently_active_first() {
    on_each_server(&["away-after", "0"], |srv| {
        let mut con = srv.con();
        let scope = unique("zone");
        let users: Vec<String> = (0..7).map(|i| unique(&format!("u{i}"))).collect();
        connect_in_order(&mut con, &users, &scope);
        assert_eq!(count(&mut con, Some(&scope)), 7);

        let (cursor, first) = list(&mut con, &["SCOPE", &scope, "LIMIT", "3"]);
        assert_ne!(cursor, "0");
        let newest: Vec<&String> = users.iter().rev().take(3).collect();
        assert_eq!(
            first.iter().map(|r| &r.0).collect::<Vec<_>>(),
            newest,
            "most recently active first"
        );
        assert!(first.iter().all(|(_, status, _)| status == "online"));
        assert!(first.windows(2).all(|w| w[0].2 > w[1].2));
        let reversed: Vec<String> = users.iter().rev().cloned().collect();
        assert_eq!(list_all(&mut con, &scope, 3), reversed);
        assert_eq!(list_all(&mut con, &scope, 1000), reversed);
        // A scope nobody is in.
        assert_eq!(
            list(&mut con, &["SCOPE", &unique("empty")]),
            ("0".into(), vec![])
        );
        assert_eq!(count(&mut con, Some(&unique("empty"))), 0);
    });
}

#[test]
fn a_cursor_stays_valid_while_users_come_and_go() {
    on_each_server(&["away-after", "0"], |srv| {
        let mut con = srv.con();
        let scope = unique("room");
        let users: Vec<String> = (0..6).map(|i| unique(&format!("m{i}"))).collect();
        connect_in_order(&mut con, &users, &scope);
        let (cursor, first) = list(&mut con, &["SCOPE", &scope, "LIMIT", "2"]);
        assert_eq!(first.len(), 2);
        // Meanwhile: a newcomer, one listed user leaves, one not yet listed leaves.
        let newcomer = unique("new");
        run(
            &mut con,
            &["PRESENCE.ONLINE", &newcomer, "d", "SCOPE", &scope],
        )
        .unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &users[5], "d"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &users[1], "d"]).unwrap();
        let mut rest = Vec::new();
        let mut cursor = cursor;
        while cursor != "0" {
            let (next, rows) = list(
                &mut con,
                &["SCOPE", &scope, "LIMIT", "2", "CURSOR", &cursor],
            );
            rest.extend(rows.into_iter().map(|r| r.0));
            cursor = next;
        }
        let expected: Vec<String> = [&users[3], &users[2], &users[0]]
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(
            rest, expected,
            "no repeat, no skip of users present throughout"
        );
        assert_eq!(count(&mut con, Some(&scope)), 5);
    });
}

#[test]
fn listings_follow_status_scopes_and_departures() {
    on_each_server(&["away-after", "0", "sweep-interval", "20"], |srv| {
        let mut con = srv.con();
        let (a, b) = (unique("org"), unique("team"));
        let user = unique("ann");
        let everyone = count(&mut con, None);
        run(
            &mut con,
            &["PRESENCE.ONLINE", &user, "phone", "SCOPE", &a, &b],
        )
        .unwrap();
        assert_eq!(
            (count(&mut con, Some(&a)), count(&mut con, Some(&b))),
            (1, 1)
        );
        assert_eq!(count(&mut con, None), everyone + 1);
        // INFO shows the same count, and the scopes that have members.
        let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
        let field = |name: &str| -> i64 {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("presence_{name}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(-1)
        };
        assert_eq!(field("listed"), everyone + 1);
        assert!(field("scopes") >= 2);

        // A manual status shows in the rows; invisible users are neither listed nor counted.
        run(&mut con, &["PRESENCE.STATUS", &user, "dnd"]).unwrap();
        assert_eq!(list(&mut con, &["SCOPE", &a]).1[0].1, "dnd");
        run(&mut con, &["PRESENCE.STATUS", &user, "invisible"]).unwrap();
        assert_eq!(list(&mut con, &["SCOPE", &a]), ("0".into(), vec![]));
        assert_eq!(
            (count(&mut con, Some(&a)), count(&mut con, None)),
            (0, everyone)
        );
        run(&mut con, &["PRESENCE.STATUS", &user, "auto"]).unwrap();
        assert_eq!(count(&mut con, Some(&b)), 1);

        // Activity moves the user up; ONLINE without SCOPE keeps the scopes, with SCOPE replaces them.
        let before = list(&mut con, &["SCOPE", &a]).1[0].2;
        assert!(wait_until(WAIT, || epoch_ms() > before));
        run(&mut con, &["PRESENCE.ACTIVITY", &user]).unwrap();
        assert!(list(&mut con, &["SCOPE", &a]).1[0].2 > before);
        run(&mut con, &["PRESENCE.ONLINE", &user, "web"]).unwrap();
        assert_eq!(count(&mut con, Some(&a)), 1);
        run(&mut con, &["PRESENCE.ONLINE", &user, "web", "SCOPE", &b]).unwrap();
        assert_eq!(
            (count(&mut con, Some(&a)), count(&mut con, Some(&b))),
            (0, 1)
        );

        // Going offline leaves every listing, and the scopes are forgotten.
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "web"]).unwrap();
        assert_eq!(
            (count(&mut con, Some(&b)), count(&mut con, None)),
            (0, everyone)
        );
        run(&mut con, &["PRESENCE.ONLINE", &user, "web"]).unwrap();
        assert_eq!(count(&mut con, Some(&b)), 0);
        assert_eq!(count(&mut con, None), everyone + 1);

        // A device that stops heartbeating leaves the listings when the sweep takes it.
        let gone = unique("gone");
        run(
            &mut con,
            &["PRESENCE.ONLINE", &gone, "d", "TTL", "200", "SCOPE", &a],
        )
        .unwrap();
        assert_eq!(count(&mut con, Some(&a)), 1);
        assert!(wait_until(WAIT, || count(&mut con, Some(&a)) == 0));
    });
}

#[test]
fn listing_arguments_are_checked() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let long = "s".repeat(129);
        let u = unique("refused");
        assert_refused(
            &mut con,
            &[
                (
                    vec!["PRESENCE.LIST", "LIMIT", "0"],
                    "LIMIT must be an integer from 1 to 1000",
                ),
                (vec!["PRESENCE.LIST", "LIMIT", "1001"], "LIMIT must be"),
                (vec!["PRESENCE.LIST", "CURSOR", "12"], "invalid cursor '12'"),
                (vec!["PRESENCE.LIST", "SCOPE"], "SCOPE needs a value"),
                (vec!["PRESENCE.LIST", "FOO", "1"], "unknown option 'FOO'"),
                (
                    vec!["PRESENCE.LIST", "SCOPE", &long],
                    "scope must be 1 to 128 bytes",
                ),
                (
                    vec!["PRESENCE.COUNT", "SCOPE", "a", "SCOPE", "b"],
                    "SCOPE given more than once",
                ),
                (
                    vec!["PRESENCE.ONLINE", &u, "d", "SCOPE"],
                    "SCOPE needs at least one scope",
                ),
                (
                    vec!["PRESENCE.ONLINE", &u, "d", "SCOPE", ""],
                    "scope must be 1 to 128 bytes",
                ),
            ],
        );
        // The refused ONLINE changed nothing.
        assert_eq!(
            run(&mut con, &["EXISTS", &format!("presence:{{{u}}}")]).unwrap(),
            Value::Int(0)
        );
    });
}

#[test]
fn a_replica_and_a_restarted_server_answer_the_same_listings() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        let master = Server::start(
            kind,
            &["away-after", "0"],
            &["--appendonly", "yes", "--appendfsync", "always"],
        );
        let replica = Server::start_replica_of(&master);
        let mut mcon = master.con();
        let scope = "zone:1";
        let users: Vec<String> = (0..30).map(|i| format!("user:{i:03}")).collect();
        for (i, user) in users.iter().enumerate() {
            let scopes = if i % 3 == 0 { scope } else { "zone:2" };
            run(&mut mcon, &["PRESENCE.ONLINE", user, "d", "SCOPE", scopes]).unwrap();
        }
        run(&mut mcon, &["PRESENCE.STATUS", "user:003", "invisible"]).unwrap();
        run(&mut mcon, &["PRESENCE.OFFLINE", "user:006", "d"]).unwrap();
        let on_master = (
            list_all(&mut mcon, scope, 4),
            count(&mut mcon, Some(scope)),
            count(&mut mcon, None),
        );
        assert_eq!(on_master.1, 8, "{kind:?}");
        assert_eq!(on_master.2, 28, "{kind:?}");
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut mcon)
            .unwrap();
        assert_eq!(acked, 1, "{kind:?}");
        let mut rcon = replica.con();
        let on_replica = (
            list_all(&mut rcon, scope, 4),
            count(&mut rcon, Some(scope)),
            count(&mut rcon, None),
        );
        assert_eq!(on_replica, on_master, "{kind:?}: replica");
        drop(replica);
        let restarted = master.restart(
            &["away-after", "0"],
            &["--appendonly", "yes", "--appendfsync", "always"],
        );
        let mut con = restarted.con();
        let after = (
            list_all(&mut con, scope, 4),
            count(&mut con, Some(scope)),
            count(&mut con, None),
        );
        assert_eq!(after, on_master, "{kind:?}: after a restart from the AOF");
        // A flush empties the listings with the keys.
        run(&mut con, &["FLUSHALL"]).unwrap();
        assert_eq!(
            (count(&mut con, Some(scope)), count(&mut con, None)),
            (0, 0)
        );
    }
}
