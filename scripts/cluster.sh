#!/usr/bin/env bash
# A local Redis Cluster on loopback for trying the module and for the cluster tests: 3 masters with
# one replica each, every node with the module loaded.
#
#   scripts/cluster.sh start [--server redis|redis7.2|valkey] [--port BASE] [--dir DIR] [--replicas 0|1]
#                            [-- module args...]
#       builds the module (debug; PRESENCE_MODULE=path uses another build), starts six nodes on
#       ports BASE..BASE+5 (default 7000; masters are the first three; with --replicas 0, only
#       those three), creates the cluster and waits until every node reports cluster_state:ok.
#       Prints the ports of the nodes, one line.
#   scripts/cluster.sh stop [--dir DIR]
#       stops every node started in DIR and removes DIR.
#   scripts/cluster.sh move-slot SLOT TO_PORT [--dir DIR]
#       moves one slot, with every key in it, to the master on TO_PORT. Redis: SETSLOT IMPORTING on
#       the target, then in one transaction on the source SETSLOT MIGRATING and one MIGRATE of all
#       the slot's keys (so the slot's keys never sit on two nodes at once, and no command reaches
#       the target before they do), then SETSLOT NODE on every master. Valkey: CLUSTER
#       MIGRATESLOTS (atomic slot migration), waiting until it succeeded.
#
# DIR defaults to .cluster/<BASE>; each node keeps its config, log and data in DIR/<port>.
# Installs what it needs first (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

usage() { sed -n 2,21p "$0" >&2; exit 2; }

command=${1:-}; [ -n "$command" ] || usage; shift
server=redis base=7000 dir="" replicas=1 module_args=() positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server=$2; shift 2 ;;
    --port) base=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --) shift; module_args=("$@"); break ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ -n "$dir" ] || dir="$root/.cluster/$base"

cli() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# Waits until `check` succeeds, for up to $1 seconds.
wait_for() {
  local limit=$1; shift
  local until=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $until ] || return 1
    sleep 0.1
  done
}

all_ok() {
  local port
  for port in "${ports[@]}"; do
    cli "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

all_replicas_linked() {
  local port
  for port in "${ports[@]:3}"; do
    cli "$port" info replication 2>/dev/null | grep -q '^master_link_status:up' || return 1
  done
}

case "$command" in
start)
  bash scripts/deps.sh >/dev/null
  case "$server" in
    redis) binary=$(command -v redis-server) ;;
    redis7.2) binary="$root/.deps/redis-7.2/redis-server" ;;
    valkey) binary="$root/.deps/valkey/valkey-server" ;;
    *) echo "cluster: --server must be redis, redis7.2 or valkey" >&2; exit 2 ;;
  esac
  module=${PRESENCE_MODULE:-}
  if [ -z "$module" ]; then
    cargo build --locked --quiet
    module="$root/target/debug/libpresence.so"
  fi
  if [ -e "$dir" ]; then
    echo "cluster: $dir exists: stop that cluster first (scripts/cluster.sh stop --dir $dir)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  case "$replicas" in
    0) nodes=3 ;;
    1) nodes=6 ;;
    *) echo "cluster: --replicas must be 0 or 1" >&2; exit 2 ;;
  esac
  ports=()
  for ((i = 0; i < nodes; i++)); do
    port=$((base + i))
    ports+=("$port")
    mkdir -p "$dir/$port"
    # The cluster bus uses port + 10000.
    "$binary" --port "$port" --bind 127.0.0.1 --dir "$dir/$port" --daemonize yes \
      --pidfile "$dir/$port/server.pid" --logfile "$dir/$port/server.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --appendonly yes --save "" --enable-debug-command local \
      --loadmodule "$module" "${module_args[@]}"
  done
  for port in "${ports[@]}"; do
    if ! wait_for 10 cli "$port" ping >/dev/null 2>&1; then
      echo "cluster: node $port did not start; its log:" >&2
      cat "$dir/$port/server.log" >&2
      exit 1
    fi
  done
  addresses=()
  for port in "${ports[@]}"; do addresses+=("127.0.0.1:$port"); done
  # redis-cli makes the first three nodes masters and the others their replicas.
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 || {
    cat "$dir/create.log" >&2; exit 1; }
  wait_for 30 all_ok || { echo "cluster: not ok after 30 s" >&2; exit 1; }
  wait_for 30 all_replicas_linked || { echo "cluster: replicas not linked after 30 s" >&2; exit 1; }
  echo "${ports[*]}"
  ;;
stop)
  [ -d "$dir" ] || exit 0
  for pidfile in "$dir"/*/server.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
  done
  for pidfile in "$dir"/*/server.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
  ;;
move-slot)
  [ ${#positional[@]} -eq 2 ] || usage
  slot=${positional[0]} to=${positional[1]}
  # The slot's owner, and every master, from CLUSTER NODES as seen by the destination.
  nodes=$(cli "$to" cluster nodes)
  to_id=$(cli "$to" cluster myid)
  from=""
  while read -r id addr flags _ _ _ _ _ ranges; do
    [[ $flags == *master* ]] || continue
    for range in $ranges; do
      [[ $range == \[* ]] && continue
      lo=${range%-*} hi=${range#*-}
      if [ "$slot" -ge "$lo" ] && [ "$slot" -le "$hi" ]; then
        from_id=$id from=${addr%%@*}; from=${from##*:}
      fi
    done
  done <<<"$nodes"
  [ -n "$from" ] || { echo "cluster: no master owns slot $slot" >&2; exit 1; }
  [ "$from" != "$to" ] || { echo "cluster: slot $slot is on $to already" >&2; exit 0; }
  count=$(cli "$from" cluster countkeysinslot "$slot")
  if cli "$from" info server | grep -q '^server_name:valkey'; then
    # Valkey: its atomic slot migration moves the slot, keys and ownership together.
    successes() { cli "$from" cluster getslotmigrations | grep -A1 '^state$' | grep -c '^success$' || true; }
    before=$(successes)
    cli "$from" cluster migrateslots slotsrange "$slot" "$slot" node "$to_id" >/dev/null
    migrated() { [ "$(successes)" -gt "$before" ]; }
    wait_for 30 migrated || { echo "cluster: the migration of slot $slot did not succeed" >&2; exit 1; }
    echo "slot $slot: $count keys moved from $from to $to"
    exit 0
  fi
  cli "$to" cluster setslot "$slot" importing "$from_id" >/dev/null
  # The slot turns MIGRATING and its keys leave in one transaction. Every command names a user id,
  # which is never a key itself, so a MIGRATING source sends every command for the slot to the
  # target (ASK): were the keys still on the source then, the target would start from nothing.
  # (Valkey 9.1 aborts on CLUSTER SETSLOT inside MULTI: it takes the branch above.)
  if [ "$count" -gt 0 ]; then
    mapfile -t keys < <(cli "$from" cluster getkeysinslot "$slot" "$count")
    reply=$( {
      echo MULTI
      echo "CLUSTER SETSLOT $slot MIGRATING $to_id"
      printf 'MIGRATE 127.0.0.1 %s "" 0 10000 KEYS' "$to"
      for key in "${keys[@]}"; do quoted=${key//\\/\\\\}; printf ' "%s"' "${quoted//\"/\\\"}"; done
      echo
      echo EXEC
    } | cli "$from" | tail -2 | tr '\n' ' ')
    [ "$reply" = "OK OK " ] || { echo "cluster: MIGRATE replied $reply" >&2; exit 1; }
  else
    cli "$from" cluster setslot "$slot" migrating "$to_id" >/dev/null
  fi
  # Keys written between the listing and the transaction follow.
  while [ "$(cli "$from" cluster countkeysinslot "$slot")" -gt 0 ]; do
    mapfile -t keys < <(cli "$from" cluster getkeysinslot "$slot" 1000)
    reply=$(cli "$from" migrate 127.0.0.1 "$to" "" 0 10000 KEYS "${keys[@]}")
    [ "$reply" = OK ] || { echo "cluster: MIGRATE replied $reply" >&2; exit 1; }
  done
  # The new owner first, then the old one, then the others (as redis-cli --cluster does).
  cli "$to" cluster setslot "$slot" node "$to_id" >/dev/null
  cli "$from" cluster setslot "$slot" node "$to_id" >/dev/null
  while read -r id addr flags _; do
    [[ $flags == *master* ]] || continue
    port=${addr%%@*}; port=${port##*:}
    [ "$port" = "$to" ] || [ "$port" = "$from" ] || cli "$port" cluster setslot "$slot" node "$to_id" >/dev/null
  done <<<"$nodes"
  echo "slot $slot: $count keys moved from $from to $to"
  ;;
*) usage ;;
esac
