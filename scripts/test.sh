#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests of the pure logic, and integration tests against
# real Redis 7.0 and Valkey 9.1 servers started with the freshly built module.
# Installs what it needs first (scripts/deps.sh). Set REDIS_URL to test an already running server
# that has the module loaded instead of starting servers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

echo "== build"
cargo build --locked

echo "== unit and integration tests"
cargo test --locked -- --test-threads=4

echo "== benchmark smoke run (tiny sizes, no thresholds: keeps scripts/bench.sh working)"
bash scripts/bench.sh --smoke
