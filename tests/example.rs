//! The example app (`examples/chat-presence`) in headless Chromium: two users, where the first
//! sees the second come online, go away, set a status with a message, go offline by closing the
//! tab, come back, and go offline by timeout (`examples/chat-presence/e2e.js` drives it and checks
//! the bounds); the screenshots go to `target/example-screenshots`.

mod common;

use common::*;
use std::process::Command;

#[test]
fn the_example_app_shows_presence_live_in_a_browser() {
    build_node_client();
    let app = root().join("examples/chat-presence");
    assert!(
        app.join("node_modules/playwright-core").exists(),
        "the example's packages are missing: run scripts/deps.sh --test"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/deps.sh --test (it installs Debian's chromium)"
    );
    let server = Server::start(Kind::Redis, &[], &[]);
    let shots = root().join("target/example-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let output = Command::new("node")
        .arg(app.join("e2e.js"))
        .env("REDIS_URL", server.url())
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    println!("{}", text.trim());
    for step in [
        "1-bob-online",
        "2-bob-away",
        "3-bob-busy",
        "4-bob-offline-closed",
        "5-bob-offline-timeout",
    ] {
        assert!(
            shots.join(format!("{step}.png")).exists(),
            "no screenshot {step}"
        );
    }
}
