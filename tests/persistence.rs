//! Faults: kill -9 in the middle of a workload with AOF (appendfsync always) and with RDB, DEBUG
//! RELOAD, and a replica attached while the master works and sweeps.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the last acknowledged command did to a device: connected it, or took it away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Last {
    Connected,
    Gone,
}

/// A writer that runs until stopped: long-lived devices whose state it records per command
/// acknowledged, and short-lived ones that keep the sweep busy. Returns the acknowledged state
/// and the device whose command was in flight when the server died (it may or may not have
/// been applied).
fn workload(
    port_con: redis::Connection,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<(String, String), Last>>>,
    in_flight: Arc<Mutex<Option<(String, String)>>>,
) {
    let mut con = port_con;
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let user = format!("p{}", i % 50);
        let device = format!("d{}", i % 3);
        let key = (user.clone(), device.clone());
        *in_flight.lock().unwrap() = Some(key.clone());
        let (args, outcome): (Vec<String>, Last) = match i % 5 {
            0 => (vec!["PRESENCE.OFFLINE".into(), user, device], Last::Gone),
            1 | 2 => (
                vec![
                    "PRESENCE.ONLINE".into(),
                    user,
                    device,
                    "TTL".into(),
                    "60000".into(),
                ],
                Last::Connected,
            ),
            _ => (
                vec![
                    "PRESENCE.HEARTBEAT".into(),
                    user,
                    device,
                    "TTL".into(),
                    "60000".into(),
                ],
                Last::Connected,
            ),
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        if run(&mut con, &argv).is_err() {
            return; // the server died: this command was not acknowledged
        }
        acked.lock().unwrap().insert(key, outcome);
        // Short-lived devices the sweep removes while the workload runs.
        let short = format!("s{}", i % 200);
        if run(&mut con, &["PRESENCE.ONLINE", &short, "d", "TTL", "100"]).is_err() {
            *in_flight.lock().unwrap() = None;
            return;
        }
    }
}

#[test]
fn kill_9_with_appendfsync_always_keeps_every_acknowledged_command() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        let config = ["--appendonly", "yes", "--appendfsync", "always"];
        let server = Server::start(kind, &[], &config);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let in_flight = Arc::new(Mutex::new(None));
        let writer = {
            let (con, stop, acked, in_flight) =
                (server.con(), stop.clone(), acked.clone(), in_flight.clone());
            std::thread::spawn(move || workload(con, stop, acked, in_flight))
        };
        // Let it run (and the sweep remove short-lived devices) before the crash.
        let mut probe = server.con();
        assert!(wait_until(Duration::from_secs(10), || {
            let info: String = redis::cmd("INFO")
                .arg("presence")
                .query(&mut probe)
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("presence_timeouts:"))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .is_some_and(|n| n > 50)
        }));
        drop(probe);
        let server = server.restart(&["sweep-interval", "60000"], &config);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();

        let acked = acked.lock().unwrap().clone();
        let uncertain = in_flight.lock().unwrap().clone();
        assert!(acked.len() > 50, "{kind:?}: the workload did too little");
        let mut con = server.con();
        for ((user, device), last) in &acked {
            if uncertain.as_ref() == Some(&(user.clone(), device.clone())) {
                continue;
            }
            let devices = array(&run(&mut con, &["PRESENCE.DEVICES", user]).unwrap());
            let connected = devices.iter().any(|d| text(&map(d)["device"]) == *device);
            assert_eq!(
                connected,
                *last == Last::Connected,
                "{kind:?}: {user}/{device} after restart"
            );
        }
    }
}

#[test]
fn kill_9_after_save_restores_the_saved_state_exactly() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        let args = ["sweep-interval", "60000"];
        let server = Server::start(kind, &args, &[]);
        let mut con = server.con();
        for i in 0..300 {
            let user = format!("r{i}");
            run(
                &mut con,
                &["PRESENCE.ONLINE", &user, "phone", "META", r#"{"a":1}"#],
            )
            .unwrap();
            if i % 3 == 0 {
                run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
            }
        }
        let saved = snapshot(&mut con);
        run(&mut con, &["SAVE"]).unwrap();
        // Acknowledged after the snapshot, so lost with it: RDB's contract.
        run(&mut con, &["PRESENCE.ONLINE", "late", "d"]).unwrap();
        let server = server.restart(&args, &[]);
        let mut con = server.con();
        assert_eq!(snapshot(&mut con), saved, "{kind:?}");
        // DEBUG RELOAD (save and load again) keeps it exactly too.
        run(&mut con, &["DEBUG", "RELOAD"]).unwrap();
        assert_eq!(snapshot(&mut con), saved, "{kind:?}: DEBUG RELOAD");
        // And the module works on what it loaded.
        assert_eq!(
            int(&run(&mut con, &["PRESENCE.ONLINE", "r0", "phone"]).unwrap()),
            1
        );
    }
}

#[test]
fn a_replica_attached_during_a_workload_converges_to_the_master() {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        let master = Server::start(kind, &[], &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (con, stop) = (master.con(), stop.clone());
            let acked = Arc::new(Mutex::new(BTreeMap::new()));
            let in_flight = Arc::new(Mutex::new(None));
            std::thread::spawn(move || workload(con, stop, acked, in_flight))
        };
        std::thread::sleep(Duration::from_millis(200)); // the workload is under way
        let replica = Server::start_replica_of(&master);
        std::thread::sleep(Duration::from_millis(300)); // and goes on with the replica attached
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        let mut mcon = master.con();
        // Wait until the sweep has removed every short-lived device, so nothing changes anymore.
        assert!(wait_until(Duration::from_secs(10), || {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("presence:{s*")
                .query(&mut mcon)
                .unwrap();
            keys.iter().all(|k| {
                let fields: Vec<String> = redis::cmd("HKEYS").arg(k).query(&mut mcon).unwrap();
                !fields.iter().any(|f| f.starts_with("dev:"))
            })
        }));
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut mcon)
            .unwrap();
        assert_eq!(acked, 1);
        let on_master = snapshot(&mut mcon);
        assert!(on_master.len() > 100, "{kind:?}: {} keys", on_master.len());
        assert_eq!(snapshot(&mut replica.con()), on_master, "{kind:?}");
    }
}
