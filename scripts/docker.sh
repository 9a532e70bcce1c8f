#!/usr/bin/env bash
# Docker: the image users run (Dockerfile, compose.yaml), built, run and tested here.
#
#   scripts/docker.sh build          builds the image `presence`
#   scripts/docker.sh up [PORT]      runs it as container `presence` on 127.0.0.1:PORT (default
#                                    6379), data in the volume `presence-data`
#   scripts/docker.sh down           stops and removes that container (the volume stays)
#   scripts/docker.sh compose ARGS   docker-compose with compose.yaml and the bases chosen here
#                                    (`scripts/docker.sh compose up -d`)
#   scripts/docker.sh test           the Docker stage of scripts/test.sh (below)
#   scripts/docker.sh stop-engine    stops the engine, if this script started it
#
# Installs what it needs (Debian's docker.io, docker-compose and debootstrap) and starts the
# engine (dockerd, as root) when none is running. Bases: the official images (rust:1-bookworm,
# redis:7.0-bookworm) when they can be pulled; else a Debian bookworm base made here with
# debootstrap and imported as local/debian:bookworm, Debian's redis-server installed in it, and
# the module built on the host (MODULE=prebuilt). PRESENCE_DOCKER_BASES=official|local forces one.
#
# `test`: builds the image, runs it with host networking on a free loopback port with a fresh
# volume, runs the integration tests against it (REDIS_URL), checks that the data survives a
# restart of the container, brings compose.yaml up on another free port and checks it serves,
# then removes what it started, the engine included when it started it.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.deps/docker
mkdir -p "$state"
# The engine's own client (Debian's docker.io), with BuildKit: it builds only the stages used.
docker() { DOCKER_BUILDKIT=1 /usr/bin/docker "$@"; }

install_missing() {
  local need=()
  [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    echo "docker: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

start_engine() {
  install_missing
  docker info >/dev/null 2>&1 && return 0
  echo "docker: starting dockerd"
  dockerd >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "docker: dockerd did not start:" >&2
  tail -5 "$state/dockerd.log" >&2
  exit 1
}

stop_engine() {
  [ -f "$state/dockerd.pid" ] || return 0
  local pid
  pid=$(cat "$state/dockerd.pid")
  rm -f "$state/dockerd.pid"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || { echo "docker: stopped dockerd"; return 0; }
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Sets build_args (and exports the compose variables) for the bases this machine can use.
choose_bases() {
  local bases=${PRESENCE_DOCKER_BASES:-auto}
  if [ "$bases" != local ] && timeout 60 /usr/bin/docker pull -q redis:7.0-bookworm >/dev/null 2>&1 \
      && timeout 120 /usr/bin/docker pull -q rust:1-bookworm >/dev/null 2>&1; then
    echo "docker: official bases"
    build_args=()
    return
  fi
  if [ "$bases" = official ]; then
    echo "docker: the official images cannot be pulled" >&2
    exit 1
  fi
  echo "docker: the official images cannot be pulled here: local Debian base, module built on the host"
  if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
    local root
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$state/debootstrap.log" 2>&1 \
      || { echo "docker: debootstrap failed (see $state/debootstrap.log)" >&2; rm -rf "$root"; exit 1; }
    tar -C "$root" -c . | docker import - local/debian:bookworm >/dev/null
    rm -rf "$root"
  fi
  cargo build --locked --release --quiet
  build_args=(--build-arg RUNTIME_IMAGE=local/debian:bookworm --build-arg MODULE=prebuilt)
  export PRESENCE_RUNTIME_IMAGE=local/debian:bookworm PRESENCE_MODULE_SOURCE=prebuilt
}

build() {
  start_engine
  choose_bases
  docker build --quiet --network host "${build_args[@]}" -t presence . >/dev/null
  echo "docker: built image presence ($(docker run --rm --entrypoint redis-server presence --version | cut -d' ' -f1-3))"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_ping() {
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  return 1
}

compose() {
  # docker-compose runs builds through the docker client on the PATH: the engine's own.
  PATH="/usr/bin:$PATH" COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1 \
    docker-compose -f compose.yaml -p presence "$@"
}

container=presence-test
volume=presence-test-data
run_test() {
  build
  local port
  port=$(free_port)
  cleanup() {
    docker rm -f "$container" >/dev/null 2>&1 || true
    docker volume rm -f "$volume" >/dev/null 2>&1 || true
    PRESENCE_PORT=0 compose down --volumes >/dev/null 2>&1 || true
    stop_engine
  }
  trap cleanup EXIT
  docker rm -f "$container" >/dev/null 2>&1 || true
  docker volume rm -f "$volume" >/dev/null 2>&1 || true
  docker run -d --name "$container" --network host -v "$volume:/data" \
    -e REDIS_ARGS="--bind 127.0.0.1 --port $port" presence >/dev/null
  wait_for_ping "$port" || { docker logs "$container" | tail -5; exit 1; }
  echo "docker: container $container on 127.0.0.1:$port; integration tests against it"
  # One test at a time: tests that change a setting would otherwise change it under the others.
  REDIS_URL="redis://127.0.0.1:$port/" cargo test --locked --no-fail-fast --test "*" -- --test-threads=1

  echo "docker: the data survives a restart of the container"
  local user=docker-persistence before after
  redis-cli -p "$port" PRESENCE.ONLINE "$user" phone TTL 600000 META '{"os":"ios"}' >/dev/null
  redis-cli -p "$port" PRESENCE.STATUS "$user" busy MESSAGE "In a meeting" >/dev/null
  before=$(redis-cli -p "$port" PRESENCE.GET "$user"; redis-cli -p "$port" PRESENCE.DEVICES "$user")
  docker restart "$container" >/dev/null
  wait_for_ping "$port" || { docker logs "$container" | tail -5; exit 1; }
  after=$(redis-cli -p "$port" PRESENCE.GET "$user"; redis-cli -p "$port" PRESENCE.DEVICES "$user")
  if [ "$before" != "$after" ] || ! grep -q "In a meeting" <<<"$after"; then
    echo "docker: after a restart the record differs:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
  fi
  echo "docker: persistence: 1 passed, 0 failed"

  echo "docker: compose.yaml serves the module"
  port=$(free_port)
  PRESENCE_PORT=$port compose up -d --build >/dev/null 2>&1 \
    || { PRESENCE_PORT=$port compose up -d --build; exit 1; }
  wait_for_ping "$port" || { compose logs | tail -5; exit 1; }
  if [ "$(redis-cli -p "$port" PRESENCE.ONLINE compose-user d)" != 1 ]; then
    echo "docker: compose's server does not run PRESENCE.ONLINE" >&2
    exit 1
  fi
  PRESENCE_PORT=$port compose down --volumes >/dev/null 2>&1
  echo "docker: compose: 1 passed, 0 failed"
}

case "${1:-}" in
  build) build ;;
  up)
    build
    port=${2:-6379}
    docker rm -f presence >/dev/null 2>&1 || true
    docker run -d --name presence -p "127.0.0.1:$port:6379" -v presence-data:/data presence >/dev/null
    wait_for_ping "$port"
    echo "docker: presence serves on 127.0.0.1:$port (scripts/docker.sh down to stop it)"
    ;;
  down) docker rm -f presence >/dev/null 2>&1 || true ;;
  compose) shift; start_engine; choose_bases; compose "$@" ;;
  test) run_test ;;
  stop-engine) stop_engine ;;
  *) sed -n 2,21p "$0" >&2; exit 2 ;;
esac
