#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests of the pure logic, integration tests against
# real Redis 7.0, Redis 7.2 and Valkey 9.1 servers started with the freshly built module, and the
# same integration tests against the Docker image (scripts/docker.sh test).
# Installs what it needs first (scripts/deps.sh). Set REDIS_URL to test an already running server
# that has the module loaded instead of starting servers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh --test

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

echo "== build"
cargo build --locked

echo "== unit and integration tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked -- --test-threads=4 2>&1 | tee "$log"

echo "== cargo fuzz: the parsing and model code, 20 seconds"
bash scripts/fuzz.sh 20

echo "== memory check: a workload under valgrind"
bash scripts/memcheck.sh

echo "== benchmark smoke run (tiny sizes, no thresholds: keeps scripts/bench.sh working)"
bash scripts/bench.sh --smoke

echo "== Docker: the image built, the integration tests against a container, persistence, compose"
bash scripts/docker.sh test 2>&1 | tee -a "$log"

# One closing line for the whole run, counted from cargo's per-binary results and the tests that
# said they were skipped (against REDIS_URL; they count as passed in cargo's results too).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /SKIPPED [^:]+: / { s += 1 }
     END { printf "tests: %d passed, %d failed", p, f; if (s) printf " (%d of the passed skipped)", s; printf "\n" }' "$log"
