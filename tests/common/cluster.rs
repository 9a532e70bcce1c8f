//! Local clusters for the tests: 3 masters with a replica each, started by `scripts/cluster.sh`
//! with the freshly built module, and the helpers that read them whole.

use super::*;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Connection, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(10);

/// A running local cluster, stopped (and its directory removed) when dropped.
pub struct Cluster {
    pub kind: Kind,
    pub base: u16,
    pub dir: PathBuf,
}

pub fn script(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(root().join("scripts/cluster.sh"))
        .args(args)
        .env("PRESENCE_MODULE", module_path())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Six free client ports in a row whose cluster-bus ports (+10000) are free too.
pub fn free_base() -> u16 {
    loop {
        let base = free_port();
        if base > 50_000 {
            continue;
        }
        let free = (0..6).all(|i| {
            [base + i, base + i + 10_000]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            return base;
        }
    }
}

impl Cluster {
    pub fn start(kind: Kind, module_args: &[&str]) -> Cluster {
        let server = match kind {
            Kind::Redis => "redis",
            Kind::Redis72 => "redis7.2",
            Kind::Valkey => "valkey",
        };
        let mut last = String::new();
        for _ in 0..3 {
            let base = free_base();
            let dir = std::env::temp_dir()
                .join(format!("presence-cluster-{}-{base}", std::process::id()));
            let base_text = base.to_string();
            let dir_text = dir.to_string_lossy().to_string();
            let mut args = vec![
                "start", "--server", server, "--port", &base_text, "--dir", &dir_text, "--",
            ];
            args.extend_from_slice(module_args);
            match script(&args) {
                Ok(_) => return Cluster { kind, base, dir },
                Err(e) => {
                    last = e;
                    let _ = script(&["stop", "--dir", &dir_text]);
                }
            }
        }
        panic!("{kind:?}: the cluster did not start: {last}");
    }

    pub fn ports(&self) -> Vec<u16> {
        (self.base..self.base + 6).collect()
    }

    pub fn con(&self, port: u16) -> Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect to a node")
    }

    pub fn client(&self) -> ClusterConnection {
        let nodes: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect();
        ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
            .build()
            .and_then(|c| c.get_connection())
            .expect("cluster connection")
    }

    /// The masters that own slots, as `CLUSTER NODES` on a live node says: (port, slot ranges).
    pub fn masters(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        for port in self.ports() {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
                continue;
            };
            let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
                continue;
            };
            let Ok(nodes) = redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut con) else {
                continue;
            };
            let mut masters = Vec::new();
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let addr = fields[1].split('@').next().unwrap_or("");
                let port: u16 = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let ranges: Vec<(u16, u16)> = fields[8..]
                    .iter()
                    .filter(|r| !r.starts_with('['))
                    .filter_map(|r| {
                        let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                        Some((lo.parse().ok()?, hi.parse().ok()?))
                    })
                    .collect();
                if !ranges.is_empty() {
                    masters.push((port, ranges));
                }
            }
            masters.sort();
            return masters;
        }
        panic!("no node of the cluster answers");
    }

    /// The port of the master that owns `slot`.
    pub fn owner(&self, slot: u16) -> u16 {
        self.masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot)))
            .map(|(port, _)| port)
            .expect("an owner for every slot")
    }

    pub fn move_slot(&self, slot: u16, to: u16) -> String {
        let dir = self.dir.to_string_lossy().to_string();
        script(&[
            "move-slot",
            &slot.to_string(),
            &to.to_string(),
            "--dir",
            &dir,
        ])
        .unwrap_or_else(|e| panic!("{:?}: move-slot failed: {e}", self.kind))
    }

    /// Kills a node as a crash would.
    pub fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.join(port.to_string()).join("server.pid"))
            .expect("pid file");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&["stop", "--dir", &self.dir.to_string_lossy()]);
    }
}

pub fn on_each_cluster(module_args: &[&str], check: impl Fn(&Cluster)) {
    if skip_on_external("needs servers of its own") {
        return;
    }
    for kind in kinds() {
        let cluster = Cluster::start(kind, module_args);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&cluster)));
        if let Err(panic) = outcome {
            eprintln!("failed on a {kind:?} cluster");
            std::panic::resume_unwind(panic);
        }
    }
}

pub fn q(con: &mut impl redis::ConnectionLike, args: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Value>(con).map_err(|e| e.to_string())
}

/// The cluster slot of a key without braces, computed here as the cluster specification says
/// (CRC16/XMODEM modulo 16384; the tests check it against CLUSTER KEYSLOT). The module's own code
/// cannot be linked into a test binary: it installs the server's allocator.
pub mod keys {
    pub fn slot(key: &[u8]) -> u16 {
        let mut crc: u16 = 0;
        for &byte in key {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc & 0x3fff
    }
}

/// Users whose ids (without braces: each its own hash tag) all fall in one slot.
pub fn users_in_slot(prefix: &str, slot: u16, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|u| keys::slot(u.as_bytes()) == slot)
        .take(n)
        .collect()
}

/// PRESENCE.BULK for users anywhere in the cluster: one BULK per slot (a cluster refuses keys of
/// several slots in one command, as for MGET), rows put back in the order asked.
pub fn bulk_anywhere(con: &mut ClusterConnection, users: &[String]) -> Vec<Vec<Value>> {
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, user) in users.iter().enumerate() {
        by_slot
            .entry(keys::slot(user.as_bytes()))
            .or_default()
            .push(i);
    }
    let mut rows: Vec<Vec<Value>> = vec![Vec::new(); users.len()];
    for positions in by_slot.values() {
        let mut args = vec!["PRESENCE.BULK"];
        args.extend(positions.iter().map(|&i| users[i].as_str()));
        let reply = array(&q(con, &args).unwrap());
        for (&i, row) in positions.iter().zip(reply) {
            rows[i] = array(&row);
        }
    }
    rows
}

/// PRESENCE.LIST over the whole cluster: every master's pages, merged by last activity (then user
/// id, both descending, the order each node uses).
pub fn list_everywhere(cluster: &Cluster, scope: Option<&str>) -> Vec<(String, i64)> {
    let mut all = Vec::new();
    for (port, _) in cluster.masters() {
        let mut con = cluster.con(port);
        let mut cursor = "0".to_string();
        loop {
            let mut args = vec!["PRESENCE.LIST", "LIMIT", "7", "CURSOR", &cursor];
            if let Some(scope) = scope {
                args.extend(["SCOPE", scope]);
            }
            let reply = array(&q(&mut con, &args).unwrap());
            for row in array(&reply[1]) {
                let row = array(&row);
                all.push((text(&row[0]), int(&row[2])));
            }
            cursor = text(&reply[0]);
            if cursor == "0" {
                break;
            }
        }
    }
    all.sort_by(|a, b| (b.1, b.0.as_bytes()).cmp(&(a.1, a.0.as_bytes())));
    all
}

pub fn count_everywhere(cluster: &Cluster, scope: Option<&str>) -> i64 {
    cluster
        .masters()
        .into_iter()
        .map(|(port, _)| {
            let mut con = cluster.con(port);
            let mut args = vec!["PRESENCE.COUNT"];
            if let Some(scope) = scope {
                args.extend(["SCOPE", scope]);
            }
            int(&q(&mut con, &args).unwrap())
        })
        .sum()
}
