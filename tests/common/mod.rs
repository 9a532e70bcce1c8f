//! Test harness: real redis-server and valkey-server processes with the freshly built module, each on
//! a free loopback port and in a directory of its own, stopped when the handle is dropped.
//!
//! Environment:
//! - `PRESENCE_MODULE`: the module to load (default `target/debug/libpresence.so`).
//! - `REDIS_SERVER`, `REDIS72_SERVER`, `VALKEY_SERVER`: the server binaries (defaults:
//!   `redis-server` on the PATH (Redis 7.0), `.deps/redis-7.2/redis-server` and
//!   `.deps/valkey/valkey-server`, where `scripts/deps.sh` puts them).
//! - `REDIS_URL`: run against that already running server (with the module loaded) instead of
//!   starting servers; tests that need servers of their own (replicas, restarts) are skipped.
#![allow(dead_code)]

pub mod cluster;

use redis::{Connection, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Debian's Redis 7.0.
    Redis,
    /// Redis 7.2.6, built from source by `scripts/deps.sh`.
    Redis72,
    Valkey,
}

pub struct Server {
    pub kind: Kind,
    pub port: u16,
    pub dir: PathBuf,
    url: String,
    child: Option<Child>,
    /// Settings changed on an external server, with the values to put back.
    restore: Vec<(String, String)>,
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn module_path() -> PathBuf {
    let path = std::env::var_os("PRESENCE_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/libpresence.so"));
    assert!(
        path.exists(),
        "module not found at {}: run `cargo build` first (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn binary(kind: Kind) -> PathBuf {
    match kind {
        Kind::Redis => std::env::var_os("REDIS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server")),
        Kind::Redis72 => {
            let path = std::env::var_os("REDIS72_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join(".deps/redis-7.2/redis-server"));
            assert!(
                path.exists(),
                "Redis 7.2 not found at {}: run scripts/deps.sh (scripts/test.sh does)",
                path.display()
            );
            path
        }
        Kind::Valkey => {
            let path = std::env::var_os("VALKEY_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join(".deps/valkey/valkey-server"));
            assert!(
                path.exists(),
                "valkey-server not found at {}: run scripts/deps.sh (scripts/test.sh does)",
                path.display()
            );
            path
        }
    }
}

/// The external server named by `REDIS_URL`, if any.
pub fn external() -> Option<String> {
    std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty())
}

/// Whether the calling test must stop because it runs against `REDIS_URL` and needs what such a
/// server cannot give (`why`). Says so where it is seen: straight on the terminal, past the test
/// harness's capture, as a line `SKIPPED <test>: <why>` that `scripts/test.sh` counts.
pub fn skip_on_external(why: &str) -> bool {
    if external().is_none() {
        return false;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    true
}

/// Serializes the tests that measure time against the tests that load the machine (restarts,
/// failovers, mass expiries): hold it for the whole test.
pub fn timing_lock() -> std::sync::MutexGuard<'static, ()> {
    static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TIMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The servers every behaviour is checked on.
pub fn kinds() -> Vec<Kind> {
    if external().is_some() {
        vec![Kind::Redis]
    } else {
        vec![Kind::Redis, Kind::Redis72, Kind::Valkey]
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Server {
    /// Starts a server of `kind` with the module loaded with `module_args` and extra server
    /// `config` (`["--appendonly", "yes"]`). Against `REDIS_URL`, applies the module arguments
    /// with CONFIG SET instead.
    pub fn start(kind: Kind, module_args: &[&str], config: &[&str]) -> Server {
        Server::start_with_env(kind, module_args, config, &[])
    }

    /// As [`start`](Server::start), with extra environment variables for the server process
    /// (a started server only).
    pub fn start_with_env(
        kind: Kind,
        module_args: &[&str],
        config: &[&str],
        env: &[(String, String)],
    ) -> Server {
        if let Some(url) = external() {
            let mut server = Server {
                kind,
                port: 0,
                dir: std::env::temp_dir(),
                url,
                child: None,
                restore: Vec::new(),
            };
            let mut con = server.con();
            for pair in module_args.chunks(2) {
                let name = format!("presence.{}", pair[0]);
                let old: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(&name)
                    .query(&mut con)
                    .expect("CONFIG GET on REDIS_URL");
                server
                    .restore
                    .push((name, old.get(1).cloned().unwrap_or_default()));
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg(format!("presence.{}", pair[0]))
                    .arg(pair[1])
                    .query(&mut con)
                    .expect("CONFIG SET on REDIS_URL");
            }
            return server;
        }
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start_env(kind, module_args, config, env) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start {kind:?}: {last_error}");
    }

    /// Starts a server and returns its exit status and log if it fails to come up.
    pub fn try_start(kind: Kind, module_args: &[&str], config: &[&str]) -> Result<Server, String> {
        Self::try_start_env(kind, module_args, config, &[])
    }

    fn try_start_env(
        kind: Kind,
        module_args: &[&str],
        config: &[&str],
        env: &[(String, String)],
    ) -> Result<Server, String> {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("presence-test-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        Self::try_start_in(kind, module_args, config, env, dir, port)
    }

    /// Kills the server (SIGKILL, as a crash would) and starts a new one on the same data directory,
    /// with the module loaded with `module_args`.
    pub fn restart(mut self, module_args: &[&str], config: &[&str]) -> Server {
        let dir = self.dir.clone();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let kind = self.kind;
        drop(self);
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start_in(kind, module_args, config, &[], dir.clone(), free_port()) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not restart {kind:?}: {last_error}");
    }

    fn try_start_in(
        kind: Kind,
        module_args: &[&str],
        config: &[&str],
        env: &[(String, String)],
        dir: PathBuf,
        port: u16,
    ) -> Result<Server, String> {
        let log = dir.join("server.log");
        let mut cmd = Command::new(binary(kind));
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .args(config)
            .arg("--loadmodule")
            .arg(module_path())
            .args(module_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("spawn {kind:?}: {e}"))?;
        let mut server = Server {
            kind,
            port,
            dir,
            url: format!("redis://127.0.0.1:{port}/"),
            child: Some(child),
            restore: Vec::new(),
        };
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(Ok(Some(_))) = server.child.as_mut().map(|c| c.try_wait()) {
                return true;
            }
            server
                .try_con()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
                .is_some()
        });
        let exited = server
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if !up || exited.is_some() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("exit {exited:?}; log:\n{text}"));
        }
        Ok(server)
    }

    /// Starts a replica of `master` and waits until its replication link is up.
    pub fn start_replica_of(master: &Server) -> Server {
        Server::start_replica_with(master, &[])
    }

    /// Starts a replica of `master` with extra server `config` and waits until its replication
    /// link is up. The master's full syncs start at once (no diskless delay).
    pub fn start_replica_with(master: &Server, config: &[&str]) -> Server {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg("0")
            .query(&mut master.con())
            .expect("CONFIG SET repl-diskless-sync-delay");
        let port = master.port.to_string();
        let mut all = vec!["--replicaof", "127.0.0.1", &port];
        all.extend_from_slice(config);
        let replica = Server::start(master.kind, &[], &all);
        let mut con = replica.con();
        let linked = wait_until(Duration::from_secs(10), || {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut con)
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });
        assert!(linked, "{:?}: the replica never linked", master.kind);
        replica
    }

    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    fn try_con(&self) -> Option<Connection> {
        let con = redis::Client::open(self.url.as_str())
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(5))
            .ok()?;
        // A server that stops answering fails the test instead of hanging it.
        con.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        Some(con)
    }

    /// A RESP2 connection.
    /// The server's address, as a `redis://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn con(&self) -> Connection {
        self.try_con().expect("connect")
    }

    /// A RESP3 connection (the client said HELLO 3).
    pub fn con3(&self) -> Connection {
        let url = if self.url.contains('?') {
            format!("{}&protocol=resp3", self.url)
        } else {
            format!("{}?protocol=resp3", self.url)
        };
        redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect with RESP3")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.restore.is_empty() {
            if let Some(mut con) = self.try_con() {
                for (name, value) in &self.restore {
                    let _: redis::RedisResult<()> = redis::cmd("CONFIG")
                        .arg("SET")
                        .arg(name)
                        .arg(value)
                        .query(&mut con);
                }
            }
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A wall clock that a test can step under a running server: an LD_PRELOAD shim
/// (`tests/support/clockshift.c`, built here with `cc`) shifts the server's wall-clock readings
/// by what [`set`](ClockShift::set) last wrote; its monotonic clock runs on.
pub struct ClockShift {
    file: PathBuf,
}

impl ClockShift {
    pub fn new() -> ClockShift {
        let shim = root().join("target/clockshift.so");
        static BUILT: std::sync::Once = std::sync::Once::new();
        BUILT.call_once(|| {
            let out = root().join(format!("target/clockshift-{}.so", std::process::id()));
            let status = Command::new("cc")
                .args(["-shared", "-fPIC", "-O2", "-o"])
                .arg(&out)
                .arg(root().join("tests/support/clockshift.c"))
                .arg("-ldl")
                .status()
                .expect("cc, to build the clock shim");
            assert!(status.success(), "building the clock shim failed");
            std::fs::rename(&out, &shim).expect("install the clock shim");
        });
        let file = std::env::temp_dir().join(format!("presence-clock-{}", unique("shift")));
        std::fs::write(&file, 0i64.to_ne_bytes()).expect("clock shift file");
        ClockShift { file }
    }

    /// The environment that makes a server read its wall clock through this shift.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "LD_PRELOAD".into(),
                root().join("target/clockshift.so").display().to_string(),
            ),
            (
                "PRESENCE_CLOCK_SHIFT_FILE".into(),
                self.file.display().to_string(),
            ),
        ]
    }

    /// From now on the server's wall clock reads `ms` away from the real one.
    pub fn set(&self, ms: i64) {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.file)
            .expect("clock shift file");
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&ms.to_ne_bytes()).unwrap();
    }
}

impl Drop for ClockShift {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Runs `check` against a fresh server of every kind (the kind is named if it fails).
pub fn on_each_server(module_args: &[&str], check: impl Fn(&Server)) {
    for kind in kinds() {
        let server = Server::start(kind, module_args, &[]);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&server)));
        if let Err(panic) = outcome {
            eprintln!("failed on {kind:?}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// A unique id for this test run, so tests against a shared `REDIS_URL` server do not meet.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    owners().entry(this_test()).or_default().push(id.clone());
    id
}

/// The ids each test made with [`unique`]: against `REDIS_URL` one server carries every test's
/// users, whose events (a timeout, a status running out) may come while a later test listens.
fn owners() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, Vec<String>>> {
    static OWNERS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
    > = std::sync::LazyLock::new(Default::default);
    OWNERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running test's name (the test harness names each test's thread after it).
fn this_test() -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

/// Runs a command built from `args` and returns the raw reply or the error text (`ERR ...`).
pub fn call(con: &mut Connection, args: &[&[u8]]) -> Result<Value, String> {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query::<Value>(con).map_err(|e| error_text(&e))
}

/// Like [`call`] with text arguments.
pub fn run(con: &mut Connection, args: &[&str]) -> Result<Value, String> {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    call(con, &bytes)
}

/// Runs each command and asserts it is refused with an `ERR` reply containing its fragment.
pub fn assert_refused<S: AsRef<str>>(con: &mut Connection, cases: &[(Vec<S>, &str)]) {
    for (args, fragment) in cases {
        let argv: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let shown = &argv[..argv.len().min(4)];
        match run(con, &argv) {
            Ok(reply) => panic!("{shown:?} must fail, replied {reply:?}"),
            Err(e) => assert!(
                e.starts_with("ERR ") && e.contains(fragment),
                "{shown:?}: '{e}' lacks '{fragment}'"
            ),
        }
    }
}

/// An error reply as the server sent it: `CODE message`.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

pub fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        other => panic!("expected a string, got {other:?}"),
    }
}

pub fn text(v: &Value) -> String {
    String::from_utf8(bytes(v)).expect("UTF-8")
}

pub fn array(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// A map reply as name → value, from a RESP3 map or a RESP2 flat array.
pub fn map(v: &Value) -> BTreeMap<String, Value> {
    match v {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Value::Array(flat) => {
            assert!(flat.len().is_multiple_of(2), "odd flat map {flat:?}");
            flat.chunks(2)
                .map(|p| (text(&p[0]), p[1].clone()))
                .collect()
        }
        other => panic!("expected a map, got {other:?}"),
    }
}

/// The field names of a map reply, in the order sent.
pub fn map_order(v: &Value) -> Vec<String> {
    match v {
        Value::Map(pairs) => pairs.iter().map(|(k, _)| text(k)).collect(),
        Value::Array(flat) => flat.chunks(2).map(|p| text(&p[0])).collect(),
        other => panic!("expected a map, got {other:?}"),
    }
}

/// Everything in the keyspace: per key its type, contents and absolute expire time.
pub type Snapshot = BTreeMap<Vec<u8>, (String, Vec<(Vec<u8>, Vec<u8>)>, i64)>;

/// What a refused command must leave as it was: everything in the keyspace on a server of the
/// test's own; against `REDIS_URL`, where other tests' keys expire and get swept meanwhile, the
/// keys named after `user` (the record and the settings).
pub fn snapshot_for(con: &mut Connection, user: &str) -> Snapshot {
    let all = snapshot(con);
    if external().is_none() {
        return all;
    }
    all.into_iter()
        .filter(|(key, _)| key.windows(user.len()).any(|w| w == user.as_bytes()))
        .collect()
}

pub fn snapshot(con: &mut Connection) -> Snapshot {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).expect("KEYS");
    let mut out = Snapshot::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(con).expect("TYPE");
        let mut contents: Vec<(Vec<u8>, Vec<u8>)> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(&key).query(con).expect("HGETALL"),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(con)
                .expect("ZRANGE"),
            "string" => vec![(
                Vec::new(),
                redis::cmd("GET").arg(&key).query(con).expect("GET"),
            )],
            "set" => {
                let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query(con)
                    .expect("SMEMBERS");
                members.into_iter().map(|m| (m, Vec::new())).collect()
            }
            // An events stream (of this test or, against REDIS_URL, of another): its length.
            "stream" => {
                let len: i64 = redis::cmd("XLEN").arg(&key).query(con).expect("XLEN");
                vec![(len.to_string().into_bytes(), Vec::new())]
            }
            // Removed since KEYS answered (the sweep runs meanwhile).
            "none" => continue,
            other => panic!("unexpected type {other} of {key:?}"),
        };
        contents.sort();
        let expire: i64 = redis::cmd("PEXPIRETIME")
            .arg(&key)
            .query(con)
            .expect("PEXPIRETIME");
        out.insert(key, (kind, contents, expire));
    }
    out
}

/// A field of `INFO presence` (`field` without the `presence_` prefix), as a number.
pub fn info_field(con: &mut Connection, field: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg("presence").query(con).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("presence_{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no presence_{field} in {info}"))
}

/// splitmix64: small, seedable, good enough to pick random test input.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The seed of a randomized test: `PRESENCE_FUZZ_SEED` to replay one, else from the clock.
pub fn fuzz_seed() -> u64 {
    std::env::var("PRESENCE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| epoch_ms() as u64)
}

/// The `seq` of each user's latest event, as stored in their record (ids without braces).
pub fn stored_seqs(con: &mut Connection, users: &[&str]) -> Vec<i64> {
    let mut pipe = redis::pipe();
    for user in users {
        pipe.cmd("HMGET")
            .arg(format!("presence:{{{user}}}"))
            .arg("seq")
            .arg("since");
    }
    let fields: Vec<(Option<i64>, Option<i64>)> = pipe.query(con).expect("HMGET seq since");
    fields
        .into_iter()
        .map(|(seq, since)| seq_of(seq, since))
        .collect()
}

/// The `seq` of the record whose hash is `key`.
pub fn stored_seq(con: &mut Connection, key: &str) -> i64 {
    let (seq, since): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg(key)
        .arg("seq")
        .arg("since")
        .query(con)
        .expect("HMGET seq since");
    seq_of(seq, since)
}

/// A stored `seq` read as the README's key layout says: counted from `since` × 1000 when small.
fn seq_of(seq: Option<i64>, since: Option<i64>) -> i64 {
    match (seq, since) {
        (Some(seq), Some(since)) if seq.abs() < 1_000_000_000_000 => since * 1000 + seq,
        (Some(seq), _) => seq,
        (None, _) => 0,
    }
}

/// Milliseconds since the epoch by this machine's clock (the servers' clock too).
pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A message received by a [`Subscriber`].
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: Vec<u8>,
    pub payload: serde_json::Value,
    /// When it arrived, by [`epoch_ms`].
    pub received: i64,
}

impl Message {
    pub fn str(&self, field: &str) -> &str {
        self.payload[field].as_str().unwrap_or("")
    }

    pub fn int(&self, field: &str) -> i64 {
        self.payload[field].as_i64().unwrap_or(-1)
    }
}

/// A connection in subscriber mode: SUBSCRIBE (global channel) or SSUBSCRIBE (per-user channels).
pub struct Subscriber {
    con: Connection,
    /// Against `REDIS_URL`: the test that listens; messages about users whose id holds none of
    /// the ids it made with [`unique`] are left out (the server carries other tests' users, and
    /// the fuzz tests' too).
    test: Option<String>,
}

impl Subscriber {
    pub fn new(server: &Server, command: &str, channels: &[&[u8]]) -> Subscriber {
        Subscriber::on(server.con(), command, channels)
    }

    /// Subscribes on a connection of the caller's.
    pub fn on(mut con: Connection, command: &str, channels: &[&[u8]]) -> Subscriber {
        let mut cmd = redis::cmd(command);
        for c in channels {
            cmd.arg(*c);
        }
        con.send_packed_command(&cmd.get_packed_command())
            .expect("subscribe");
        for _ in channels {
            con.recv_response().expect("subscribe confirmation");
        }
        let test = external().map(|_| this_test());
        Subscriber { con, test }
    }

    /// The next message, or None if none arrives within `limit`.
    pub fn next(&mut self, limit: Duration) -> Option<Message> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            self.con
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let reply = self.con.recv_response().ok()?;
            let received = epoch_ms();
            let parts = array(&reply);
            let kind = text(&parts[0]);
            assert!(kind == "message" || kind == "smessage", "{parts:?}");
            let payload: serde_json::Value =
                serde_json::from_slice(&bytes(&parts[2])).expect("JSON payload");
            if let Some(test) = &self.test {
                let user = payload["user"].as_str().unwrap_or_default();
                // The test's users are its ids, or ids built around one of them.
                let owned = owners()
                    .get(test)
                    .is_some_and(|ids| ids.iter().any(|id| user.contains(id.as_str())));
                if !owned {
                    continue;
                }
            }
            return Some(Message {
                channel: bytes(&parts[1]),
                payload,
                received,
            });
        }
    }

    /// Collects `count` messages, waiting at most `limit` in all.
    pub fn take(&mut self, count: usize, limit: Duration) -> Vec<Message> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next(left) {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }

    /// Asserts that nothing more arrives within `quiet`. The connection is spent afterwards (a
    /// read that timed out leaves it unusable), so this is a test's last look.
    pub fn assert_quiet(mut self, quiet: Duration) {
        if let Some(m) = self.next(quiet) {
            panic!("unexpected message {:?}", m.payload);
        }
    }
}

/// Builds the Node client (`clients/node`, strict TypeScript: the build is its type check) once
/// per test run; the tests that use it run in parallel.
pub fn build_node_client() {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let dir = root().join("clients/node");
    let built = BUILT.get_or_init(|| {
        if !dir.join("node_modules/typescript").exists() {
            return Err(
                "the Node client's packages are missing: run scripts/deps.sh --test".into(),
            );
        }
        let build = std::process::Command::new("npx")
            .args(["tsc", "-p", "."])
            .current_dir(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if build.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&build.stdout),
                String::from_utf8_lossy(&build.stderr)
            ))
        }
    });
    if let Err(problem) = built {
        panic!("tsc: {problem}");
    }
}
