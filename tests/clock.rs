//! Wall-clock steps and skew: servers whose wall clock a test steps while they run (an LD_PRELOAD
//! shim, see `ClockShift`). Liveness is judged by time that does not jump: no mass timeout after
//! a step forward, dead devices still expire after a step back, and a replica judges by its
//! master's clock.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const HOUR: i64 = 3600 * 1000;

/// Heartbeats `users` every 300 ms against the server on `port` until `stop` is set; returns how
/// many heartbeats found their device gone (replied 0).
fn heartbeat(port: u16, users: Vec<String>, stop: Arc<AtomicBool>) -> JoinHandle<i64> {
    std::thread::spawn(move || {
        let mut lost = 0;
        let url = format!("redis://127.0.0.1:{port}/");
        let mut con = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            let mut pipe = redis::pipe();
            for user in &users {
                pipe.cmd("PRESENCE.HEARTBEAT").arg(user).arg("d");
            }
            if let Ok(replies) = pipe.query::<Vec<i64>>(&mut con) {
                lost += replies.iter().filter(|&&r| r == 0).count() as i64;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        lost
    })
}

fn online(con: &mut redis::Connection, users: &[String], ttl: &str) {
    let mut pipe = redis::pipe();
    for user in users {
        pipe.cmd("PRESENCE.ONLINE")
            .arg(user)
            .arg("d")
            .arg("TTL")
            .arg(ttl)
            .ignore();
    }
    let _: () = pipe.query(con).unwrap();
}

/// A server of each kind whose wall clock the test steps (none on REDIS_URL: said so).
fn servers_with_a_clock_to_step() -> Vec<(ClockShift, Server)> {
    if skip_on_external("steps the clock of servers of its own") {
        return Vec::new();
    }
    kinds()
        .into_iter()
        .map(|kind| {
            let clock = ClockShift::new();
            let args = ["sweep-interval", "20", "away-after", "0"];
            let server = Server::start_with_env(kind, &args, &[], &clock.env());
            (clock, server)
        })
        .collect()
}

#[test]
fn a_step_forward_of_an_hour_announces_no_one_offline() {
    for (clock, server) in servers_with_a_clock_to_step() {
        let kind = server.kind;
        let mut con = server.con();
        let users: Vec<String> = (0..200).map(|i| format!("fw{i}")).collect();
        online(&mut con, &users, "1500");
        let since = int(&map(&run(&mut con, &["PRESENCE.GET", "fw0"]).unwrap())["since"]);
        let mut events = Subscriber::new(&server, "SUBSCRIBE", &[b"presence:events"]);
        let stop = Arc::new(AtomicBool::new(false));
        let beating = heartbeat(server.port, users.clone(), stop.clone());
        std::thread::sleep(Duration::from_millis(500));
        clock.set(HOUR);
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        let lost = beating.join().unwrap();
        assert_eq!(lost, 0, "{kind:?}: heartbeats found their device gone");
        if let Some(m) = events.next(Duration::from_millis(200)) {
            panic!("{kind:?}: an event after the step: {:?}", m.payload);
        }
        // Stored times went on from where they were, not an hour later.
        let g = map(&run(&mut con, &["PRESENCE.GET", "fw0"]).unwrap());
        assert_eq!(
            (text(&g["status"]), int(&g["since"])),
            ("online".into(), since)
        );
        let devices = array(&run(&mut con, &["PRESENCE.DEVICES", "fw0"]).unwrap());
        let hb = int(&map(&devices[0])["last_heartbeat"]);
        assert!(
            hb < epoch_ms() + 60_000,
            "{kind:?}: last heartbeat {hb} an hour ahead"
        );
        assert!(info_field(&mut con, "clock_offset_ms") < -HOUR + 10_000);
        assert!(server.log().contains("the wall clock stepped by"));
    }
}

#[test]
fn after_a_step_back_of_an_hour_dead_devices_still_expire_on_time() {
    for (clock, server) in servers_with_a_clock_to_step() {
        let kind = server.kind;
        let mut con = server.con();
        let dead: Vec<String> = (0..100).map(|i| format!("bk{i}")).collect();
        let mut events = Subscriber::new(&server, "SUBSCRIBE", &[b"presence:events"]);
        online(&mut con, &dead, "1000");
        let connected = std::time::Instant::now();
        run(&mut con, &["PRESENCE.ONLINE", "active", "d"]).unwrap();
        let _ = events.take(101, Duration::from_secs(5));
        clock.set(-HOUR);
        // Activity after the step puts the user at the top of LIST, above everyone before.
        std::thread::sleep(Duration::from_millis(100));
        run(&mut con, &["PRESENCE.ACTIVITY", "active"]).unwrap();
        let page = array(&run(&mut con, &["PRESENCE.LIST", "LIMIT", "1"]).unwrap());
        assert_eq!(text(&array(&array(&page[1])[0])[0]), "active", "{kind:?}");
        // Every dead device is announced within its TTL and a margin of the connect.
        let offline = events.take(100, Duration::from_secs(5));
        let took = connected.elapsed();
        assert_eq!(offline.len(), 100, "{kind:?}: dead devices kept online");
        assert!(offline.iter().all(|m| m.str("status") == "offline"));
        assert!(
            took < Duration::from_millis(2500),
            "{kind:?}: took {took:?}"
        );
        // No time the module gives is in the future of what it gave before the step.
        let g = map(&run(&mut con, &["PRESENCE.GET", "bk0"]).unwrap());
        assert!(int(&g["last_seen"]) <= epoch_ms());
    }
}

#[test]
fn a_replica_with_a_clock_ahead_judges_by_its_masters_and_is_promoted_without_false_timeouts() {
    if skip_on_external("needs a replica with a clock of its own") {
        return;
    }
    for kind in kinds() {
        let master = Server::start(kind, &["sweep-interval", "20", "away-after", "0"], &[]);
        let clock = ClockShift::new();
        clock.set(90_000);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg("0")
            .query(&mut master.con())
            .unwrap();
        let port = master.port.to_string();
        let replica = Server::start_with_env(
            kind,
            &["sweep-interval", "20", "away-after", "0"],
            &["--replicaof", "127.0.0.1", &port],
            &clock.env(),
        );
        let mut rcon = replica.con();
        let mut con = master.con();
        let users: Vec<String> = (0..200).map(|i| format!("sk{i}")).collect();
        online(&mut con, &users, "2000");
        let stop = Arc::new(AtomicBool::new(false));
        let beating = heartbeat(master.port, users.clone(), stop.clone());
        // Once the master's time has reached it, the replica sees everyone online.
        assert!(
            wait_until(Duration::from_secs(10), || {
                let rows = array(&run(&mut rcon, &["PRESENCE.BULK", "sk0", "sk199"]).unwrap());
                rows.iter().all(|r| text(&array(r)[1]) == "online")
            }),
            "{kind:?}: the replica judged by its own clock"
        );
        assert!(info_field(&mut rcon, "master_clock_skew_ms") < -80_000);
        stop.store(true, Ordering::Relaxed);
        beating.join().unwrap();
        // The master goes; the replica takes over and the users heartbeat to it.
        drop(con);
        drop(master);
        let mut events = Subscriber::new(&replica, "SUBSCRIBE", &[b"presence:events"]);
        run(&mut rcon, &["REPLICAOF", "NO", "ONE"]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let beating = heartbeat(replica.port, users.clone(), stop.clone());
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        let lost = beating.join().unwrap();
        assert_eq!(lost, 0, "{kind:?}: heartbeats found their device gone");
        if let Some(m) = events.next(Duration::from_millis(200)) {
            panic!("{kind:?}: an event after the promotion: {:?}", m.payload);
        }
    }
}
