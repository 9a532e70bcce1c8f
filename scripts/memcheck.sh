#!/usr/bin/env bash
# Runs an integration workload against a server under valgrind with the freshly built module and
# fails if valgrind reports an invalid access or a leak whose stack goes through the module.
# The server is Valkey 9.1, built with the libc allocator, so valgrind sees every allocation
# (Debian's redis-server uses jemalloc, which hides them from valgrind).
# Installs what it needs (scripts/deps.sh, valgrind). Takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh >/dev/null
if ! command -v valgrind >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind >/dev/null
fi
cargo build --locked --quiet
cargo test --locked --no-run --quiet 2>/dev/null

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect --keep-debuginfo=yes \
  --suppressions="$PWD/scripts/memcheck.supp" \
  --num-callers=40 --log-file="$work/valgrind.log" \
  .deps/valkey/valkey-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" --logfile "$work/server.log" --enable-debug-command yes \
  --loadmodule "$PWD/target/debug/libpresence.so" &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for _ in $(seq 300); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.2
done
redis-cli -p "$port" ping >/dev/null

echo "memcheck: workload against valkey-server under valgrind on port $port"
# Tests that need no servers of their own and no tight timing, plus a shorter fuzz run. They are
# the workload here: valgrind slows the server tens of times, so a bound that a test waits for
# may run out; what this stage judges is valgrind's report (the tests' verdicts are in the
# test stage).
REDIS_URL="redis://127.0.0.1:$port/" PRESENCE_FUZZ_CALLS=20000 \
  cargo test --locked --quiet --no-fail-fast --test errors --test misuse --test fuzz \
  -- --test-threads=1 2>&1 | grep -E "^test result|FAILED|panicked" || true

redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$server" || true
trap - EXIT

log="$work/valgrind.log"
cp "$log" /tmp/presence-memcheck.log 2>/dev/null || true
errors=$(grep -E "ERROR SUMMARY" "$log" | tail -1)
echo "memcheck: $errors"
# Error records and leak records whose stack goes through the module (its own frames, or the
# module crate's; --keep-debuginfo names them even though the server unloads the module on exit).
module_records() {
  awk '/^==[0-9]+== [^ ]/ { if (rec ~ /libpresence|presence::|redis_module::/) print rec; rec = "" }
       { rec = rec "\n" $0 }
       END { if (rec ~ /libpresence|presence::|redis_module::/) print rec }' "$log"
}
bad=$(module_records | grep -E "Invalid|uninitialised|definitely lost|indirectly lost|Mismatched|overlap" || true)
if [ -n "$bad" ]; then
  echo "memcheck: valgrind reports problems in the module:"
  module_records | head -80
  rm -rf "$work"
  exit 1
fi
echo "memcheck: no invalid access and no leak attributable to the module"
rm -rf "$work"
