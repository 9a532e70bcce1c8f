//! The client libraries of `clients/`, run from here against real servers: the Python and Node
//! packages' own tests on each server and on a cluster of each, and their type and lint checks.

mod common;

use common::cluster::*;
use common::*;
use std::process::Command;

/// Runs test modules of the Python client with extra environment variables (the server or
/// cluster they use), and fails with their output unless every test ran and passed.
fn python_tests(what: &str, modules: &[&str], env: &[(&str, &str)]) {
    let output = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .args(modules)
        .current_dir(root().join("clients/python/tests"))
        .env("PYTHONPATH", python_path())
        .envs(env.iter().copied())
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what}: {text}");
    // None skipped for want of a server: a test that cannot run must not pass silently.
    assert!(
        !text.contains("skipped"),
        "{what}: a test was skipped: {text}"
    );
}

/// The pinned Python packages (scripts/deps.sh --test) and the client's sources.
fn python_path() -> String {
    format!(
        "{}:{}",
        root().join(".deps/python").display(),
        root().join("clients/python/src").display()
    )
}

#[test]
fn the_python_client_passes_its_tests_on_each_server() {
    for kind in kinds() {
        let server = Server::start(kind, &[], &[]);
        let what = format!("{kind:?}");
        python_tests(
            &what,
            &["test_protocol", "test_client", "test_asyncio"],
            &[("REDIS_URL", server.url())],
        );
    }
}

/// Builds the Node client (`tsc` in strict mode: the build is its type check) and runs its tests
/// with extra environment variables; fails with their output unless every test ran and passed.
fn node_tests(what: &str, files: &[&str], env: &[(&str, &str)]) {
    let dir = root().join("clients/node");
    build_node_client();
    let output = Command::new("node")
        // A test that hangs fails (with what it printed) instead of holding the run.
        .args(["--test", "--test-timeout=120000"])
        .args(files)
        .current_dir(&dir)
        .envs(env.iter().copied())
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{what}: {text}");
    assert!(
        text.contains("# skipped 0"),
        "{what}: a test was skipped: {text}"
    );
}

#[test]
fn the_node_client_passes_its_tests_on_each_server() {
    for kind in kinds() {
        let server = Server::start(kind, &[], &[]);
        let files = ["dist/test/protocol.test.js", "dist/test/client.test.js"];
        node_tests(&format!("{kind:?}"), &files, &[("REDIS_URL", server.url())]);
    }
}

#[test]
fn the_clients_reach_every_master_of_a_cluster_and_follow_resharding_and_failover() {
    if skip_on_external("needs a cluster of its own") {
        return;
    }
    on_each_cluster(&[], |cluster| {
        let node = format!("127.0.0.1:{}", cluster.ports()[0]);
        let dir = cluster.dir.to_string_lossy().to_string();
        let env = [
            ("PRESENCE_CLUSTER", node.as_str()),
            ("PRESENCE_CLUSTER_DIR", &dir),
        ];
        // Node first (it moves a slot): the Python tests move one and end by killing a master.
        let what = format!("{:?} cluster (Node)", cluster.kind);
        node_tests(&what, &["dist/test/cluster.test.js"], &env);
        let what = format!("{:?} cluster (Python)", cluster.kind);
        python_tests(&what, &["test_cluster"], &env);
    });
}

#[test]
fn the_python_client_installs_with_pip_from_the_repository() {
    // From a copy, so the build leaves nothing in the source tree.
    let work = std::env::temp_dir().join(format!("presence-pip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("a temporary directory");
    let copy = work.join("python");
    let status = Command::new("cp")
        .arg("-r")
        .arg(root().join("clients/python"))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let target = work.join("installed");
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
        ])
        .arg("--target")
        .arg(&target)
        .arg(&copy)
        .output()
        .expect("pip");
    assert!(
        output.status.success(),
        "pip install: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let import = Command::new("python3")
        .args([
            "-c",
            "import redis_presence, sys; sys.exit(0 if redis_presence.Presence else 1)",
        ])
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                target.display(),
                root().join(".deps/python").display()
            ),
        )
        .current_dir(&work)
        .output()
        .expect("python3");
    assert!(
        import.status.success() && target.join("redis_presence/py.typed").exists(),
        "the installed package: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn the_python_client_is_typed_and_lint_clean() {
    let tools = root().join(".deps/python");
    assert!(
        tools.join("bin/ruff").exists() && tools.join("mypy").exists(),
        "mypy and ruff are missing from .deps/python: run scripts/deps.sh --test"
    );
    let package = root().join("clients/python");
    let checks: [(&str, Vec<&str>); 3] = [
        ("mypy", vec!["-m", "mypy", "src", "tests"]),
        ("ruff check", vec!["check", "src", "tests"]),
        ("ruff format", vec!["format", "--check", "src", "tests"]),
    ];
    for (name, args) in checks {
        let mut command = if name == "mypy" {
            Command::new("python3")
        } else {
            Command::new(tools.join("bin/ruff"))
        };
        let output = command
            .args(&args)
            .current_dir(&package)
            .env("PYTHONPATH", &tools)
            .output()
            .expect(name);
        assert!(
            output.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
