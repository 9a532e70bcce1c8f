#!/usr/bin/env bash
# The benchmark: builds the release module, starts its own servers on free loopback ports, and
# prints one table of the native commands next to their Lua-scripted peers (bench/*.lua) and plain
# SET/HSET, plus memory per user, mass expiry and idle cost. Installs what it needs first.
#   scripts/bench.sh           full run (a few minutes)
#   scripts/bench.sh --smoke   tiny sizes, seconds: checks that the script works (CI runs it)
#   scripts/bench.sh --rooms   only the rooms figures (1,000,000 users, a fresh server per layout)
#   scripts/bench.sh --cluster HEARTBEAT on one server next to a local 3-master cluster
#                              (scripts/cluster.sh); with --smoke too, tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh >/dev/null
cargo build --locked --release --quiet
exec python3 bench/bench.py --module "$PWD/target/release/libpresence.so" "$@"
