#!/usr/bin/env bash
# Starts the example chat presence app (examples/chat-presence) with everything it needs: builds
# the module and the Node client, installs the app's packages, starts redis-server with the module
# on 127.0.0.1:6390 (data in .data/example), then the app on http://127.0.0.1:8080/ in the
# foreground; Ctrl-C stops both. Open http://127.0.0.1:8080/?user=alice and ?user=bob side by side.
#   scripts/example.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-8080}"

bash scripts/deps.sh --test >/dev/null
cargo build --locked --release --quiet
(cd clients/node && npx tsc -p .)
mkdir -p .data/example
redis-server --port 6390 --bind 127.0.0.1 --dir "$PWD/.data/example" --daemonize yes \
  --logfile "$PWD/.data/example/redis.log" --loadmodule "$PWD/target/release/libpresence.so"
trap 'redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true' EXIT
REDIS_URL=redis://127.0.0.1:6390/ PORT="$port" node examples/chat-presence/server.js
