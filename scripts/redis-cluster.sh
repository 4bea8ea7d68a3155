#!/usr/bin/env bash
# A local Redis Cluster for people (the storm, the thumbnail service): the same six nodes the
# tests start (three primaries, three replicas, no persistence), on fixed loopback ports.
#
#   scripts/redis-cluster.sh up      start it and print its URL
#   scripts/redis-cluster.sh down    stop it and remove its files
#   scripts/redis-cluster.sh status  CLUSTER NODES, or why not
#
# Environment: REDIS_CLUSTER_HOST (127.0.0.1), REDIS_CLUSTER_PORT (7000: nodes on 7000-7005,
# cluster bus on 17000-17005), REDIS_CLUSTER_DIR (${TMPDIR:-/tmp}/scoped-cache-cluster).
# Needs redis-server and redis-cli (Debian: redis-server, redis-tools).
set -euo pipefail

host=${REDIS_CLUSTER_HOST:-127.0.0.1}
base=${REDIS_CLUSTER_PORT:-7000}
dir=${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/scoped-cache-cluster}
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done

url() {
  local nodes=()
  for port in "${ports[@]}"; do nodes+=("$host:$port"); done
  (IFS=,; echo "redis-cluster://${nodes[*]}")
}

cli() { redis-cli -h "$host" -p "$1" "${@:2}"; }

up() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    echo "needs redis-server and redis-cli (apt-get install redis-server redis-tools)" >&2
    exit 1
  }
  if cli "${ports[0]}" PING >/dev/null 2>&1; then
    echo "something already answers on $host:${ports[0]}; 'down' first?" >&2
    exit 1
  fi
  mkdir -p "$dir"
  for port in "${ports[@]}"; do
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind "$host" --daemonize yes \
      --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" --dir "$dir/$port" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
      --cluster-replica-validity-factor 0 --cluster-allow-replica-migration no \
      --save "" --appendonly no --repl-diskless-sync-delay 0
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 100); do cli "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done
  done
  local nodes=()
  for port in "${ports[@]}"; do nodes+=("$host:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
    cat "$dir/create.log" >&2
    exit 1
  }
  for port in "${ports[@]}"; do
    for _ in $(seq 200); do
      cli "$port" CLUSTER INFO | grep -q '^cluster_state:ok' && break
      sleep 0.05
    done
    cli "$port" CLUSTER INFO | grep -q '^cluster_state:ok' || {
      echo "node $port is not ok; logs in $dir" >&2
      exit 1
    }
  done
  echo "cluster up (files in $dir); stop it with: $0 down"
  url
}

down() {
  for port in "${ports[@]}"; do
    cli "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
  echo "cluster down"
}

status() {
  cli "${ports[0]}" CLUSTER NODES
  url
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
