#!/usr/bin/env bash
# Fuzzes the pure parsing and model code with cargo fuzz (libFuzzer), for the given number of
# seconds (default 60). The stable toolchain runs it without a sanitizer: Rust's own checks (and
# the target's assertions) catch what goes wrong. Installs cargo-fuzz when it is missing.
#   scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
bash scripts/deps.sh >/dev/null
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cargo fuzz run --sanitizer none model -- -max_total_time="$seconds" >"$log" 2>&1; then
  echo "fuzz: $(tail -n 1 "$log")"
else
  tail -n 40 "$log"
  echo "fuzz: the target failed; the input is saved under fuzz/artifacts/model/"
  exit 1
fi
