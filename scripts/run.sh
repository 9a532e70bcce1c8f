#!/usr/bin/env bash
# Builds the module (release) and runs redis-server on 127.0.0.1:6379 with it loaded, using
# redis.conf.example. Installs what it needs first. Extra arguments go to redis-server, e.g.
#   scripts/run.sh --port 6380 --daemonize yes
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo build --locked --release
mkdir -p .data
exec redis-server redis.conf.example --dir "$PWD/.data" \
  --loadmodule "$PWD/target/release/libpresence.so" \
  "$@"
