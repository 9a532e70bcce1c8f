//! Data read back from the keyspace is untrusted: garbage written into the module's keys with
//! plain commands never takes the server down (commands, sweeps, DEBUG RELOAD, a replica's full
//! sync), and the module treats it as documented.

mod common;

use common::*;
use std::time::Duration;

/// The only key matching `pattern` (the tests that use it run on a fresh server with one user).
fn only_key(con: &mut redis::Connection, pattern: &str) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(pattern).query(con).unwrap();
    assert_eq!(keys.len(), 1, "keys matching {pattern}: {keys:?}");
    keys.into_iter().next().unwrap_or_default()
}

fn alive(con: &mut redis::Connection) -> bool {
    redis::cmd("PING").query::<String>(con).is_ok()
}

fn info_field(con: &mut redis::Connection, field: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg("presence").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("presence_{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no presence_{field} in INFO"))
}

#[test]
fn a_due_member_with_an_overflowing_length_is_dropped_not_fatal() {
    on_each_server(&["sweep-interval", "20"], |srv| {
        if srv.is_external() {
            eprintln!("skipped on REDIS_URL: reloads the server");
            return;
        }
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.ONLINE", "alice", "phone"]).unwrap();
        let due = only_key(&mut con, "presence:due:*");
        for member in ["18446744073709551615:x", "99999999999999999999:x", ":::"] {
            call(&mut con, &[b"ZADD", &due, b"0", member.as_bytes()]).unwrap();
        }
        // The sweep meets the entries, drops them and goes on.
        assert!(wait_until(Duration::from_secs(10), || {
            let n: i64 = redis::cmd("ZCARD").arg(&due).query(&mut con).unwrap();
            n == 1
        }));
        assert!(alive(&mut con));
        // With a future score the entries survive until loading, which must cope too.
        call(
            &mut con,
            &[b"ZADD", &due, b"1e15", b"18446744073709551615:x"],
        )
        .unwrap();
        run(&mut con, &["DEBUG", "RELOAD"]).unwrap();
        assert!(alive(&mut con));
        let g = map(&run(&mut con, &["PRESENCE.GET", "alice"]).unwrap());
        assert_eq!(text(&g["status"]), "online");
        assert_eq!(info_field(&mut con, "panics"), 0);
    });
}
