#!/usr/bin/env bash
# restart-stall.sh: what restarting one of two `courier run inbox` instances on
# Kafka costs, with static group membership (--instance-id) and without,
# alternated round by round in one run.
#
#   scripts/restart-stall.sh COURIER_BIN [ROUNDS]      # e.g. target/debug/courier 3
#
# Per round, mode (static | dynamic) and signal (KILL: a crash; TERM: a rolling
# restart): instance a is stopped with the signal and started again at once; the
# script prints how long after a's exit it owned partitions again, and how many
# rebalance steps the other instance, b, went through meanwhile. Needs the Kafka
# of compose/local (127.0.0.1:9092, or COURIER_KAFKA_BROKERS); works in a
# namespace of its own per round (its small topics stay on the broker).
set -euo pipefail

bin=${1:?usage: restart-stall.sh COURIER_BIN [ROUNDS]}
rounds=${2:-3}
brokers=${COURIER_KAFKA_BROKERS:-127.0.0.1:9092}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  [[ -n ${KEEP:-} ]] || rm -rf "$work"; [[ -n ${KEEP:-} ]] && echo "kept $work" >&2
}
trap cleanup EXIT

now() { date +%s.%N; }

# wait_line FILE PATTERN: until FILE has a line matching PATTERN (60 s at most).
wait_line() {
  local deadline=$((SECONDS + 60))
  until grep -qE -- "$2" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "timed out waiting for '$2' in $1" >&2; exit 1; }
    sleep 0.01
  done
}

# start NAME ID LOG: a `run inbox` instance (ID "-" for none); sets $started.
start() {
  local data="$work/$ns/$1" args=()
  [[ $2 != - ]] && args=(--instance-id "$2")
  COURIER_LOG=info "$bin" --data "$data" --config "$work/$ns.toml" "${args[@]}" run inbox 2>"$3" &
  started=$!
  pids+=("$started")
}

round() { # MODE SIGNAL
  local mode=$1 sig=$2 ida=- idb=-
  [[ $mode == static ]] && ida=a && idb=b
  ns="stall_${mode}_${sig}_$$_$RANDOM"
  printf 'namespace = "%s"\n[log]\nbackend = "kafka"\n[kafka]\nbrokers = "%s"\n' "$ns" "$brokers" >"$work/$ns.toml"
  "$bin" --data "$work/$ns/p" --config "$work/$ns.toml" topics apply >/dev/null
  start a "$ida" "$work/$ns.a.log"; local a=$started
  wait_line "$work/$ns.a.log" "runner: partitions assigned"
  start b "$idb" "$work/$ns.b.log"; local b=$started
  # Both steps of the cooperative rebalance done: a gave b its share.
  wait_line "$work/$ns.a.log" "runner: partitions revoked"
  wait_line "$work/$ns.b.log" 'runner: partitions assigned .*partitions=\[T'
  local before
  before=$(grep -c "runner: partitions" "$work/$ns.b.log" || true)
  kill "-$sig" "$a"
  wait "$a" 2>/dev/null || true
  local gone
  gone=$(now)
  start a "$ida" "$work/$ns.a2.log"; local a2=$started
  wait_line "$work/$ns.a2.log" 'runner: partitions assigned .*partitions=\[T'
  local back
  back=$(now)
  local after
  after=$(grep -c "runner: partitions" "$work/$ns.b.log" || true)
  printf '%-8s %-5s %6.2f s  %d\n' "$mode" "$sig" "$(awk "BEGIN { print $back - $gone }")" "$((after - before))"
  kill -TERM "$a2" "$b" 2>/dev/null || true
  wait "$a2" "$b" 2>/dev/null || true
}

echo "mode     sig   owned again after exit   rebalance steps at b"
for ((r = 1; r <= rounds; r++)); do
  for sig in KILL TERM; do
    round dynamic "$sig"
    round static "$sig"
  done
done
