#!/usr/bin/env bash
# search-handover.sh: how long a search partition that moves to another instance
# takes to answer exactly on its new owner, restored from a snapshot (`[search]
# snapshot_dir`) against re-indexed from the start of the log, both in one run on
# Kafka (issue 17; docs/decisions/2026-12-07-search-hand-over.md).
#
#   scripts/search-handover.sh COURIER_BIN [MESSAGES]   # e.g. target/release/courier 1000000
#
# Per mode: MESSAGES messages go to one conversation (so one partition holds them
# all); instance a indexes them (and, for hand-over, snapshots them); a is
# SIGKILLed, and instance b, with an empty disk, starts at once. Printed: the
# seconds until b answers the probe queries exactly (the last message; every
# 100th), from when it was assigned the partitions (the hand-over itself) and
# from its start (which adds the group noticing a's death: the session timeout,
# 10 s), and how b's shards were opened. Run it on a quiet
# machine. Needs the Kafka of compose/local (127.0.0.1:9092, or
# COURIER_KAFKA_BROKERS; TLS and login from its courier.env, or COURIER_KAFKA_ENV);
# each mode has a namespace of its own (its topics stay on the broker).
set -euo pipefail

bin=${1:?usage: search-handover.sh COURIER_BIN [MESSAGES]}
messages=${2:-1000000}
brokers=${COURIER_KAFKA_BROKERS:-127.0.0.1:9092}
env_file=${COURIER_KAFKA_ENV:-$HOME/.cache/courier/local/kafka/courier.env}
if [[ -f $env_file ]]; then set -a; . "$env_file"; set +a; fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # An if, not `[[ ]] &&`: a false test as the trap's last command would make
  # the whole script exit 1 (set -e) after a run that succeeded.
  if [[ -n ${KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }

# wait_line FILE PATTERN SECS: until FILE has a line matching PATTERN.
wait_line() {
  local deadline=$((SECONDS + $3))
  until grep -qE -- "$2" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "timed out waiting for '$2' in $1" >&2; exit 1; }
    sleep 0.01
  done
}

# The stream: one conversation; every 100th message says "hundredth", the last
# "needle", so exact answers mean the whole partition is indexed.
stream="$work/stream.jsonl"
awk -v n="$messages" 'BEGIN {
  print "{\"type\":\"conversation_created\",\"event_id\":\"cc\",\"conversation_id\":\"c0\",\"kind\":\"group\",\"creator_id\":\"u0\",\"member_ids\":[\"u0\",\"u1\"],\"title\":\"\",\"at_ms\":1000}"
  for (i = 1; i <= n; i++) {
    w = (i == n) ? "needle" : (i % 100 == 0 ? "hundredth" : "plain")
    printf "{\"type\":\"message_sent\",\"event_id\":\"e%d\",\"conversation_id\":\"c0\",\"message_id\":\"m%d\",\"sender_id\":\"u%d\",\"text\":\"w%d w%d %s\",\"at_ms\":%d}\n", i, i, i % 2, i % 97, i % 89, w, 1000 + i
  }
}' >"$stream"
hundredths=$(((messages - 1) / 100))

# hits ADDR WORD: how many messages of u0 the instance at ADDR finds for WORD.
hits() {
  "$bin" --data "$work/querier" search u0 "$2" --json --limit 1000000 --peers "http://$1" 2>/dev/null |
    grep -o '"message_id"' | wc -l
}

# exact ADDR: whether the instance at ADDR answers both probes exactly.
exact() {
  [[ $(hits "$1" needle) == 1 && $(hits "$1" hundredth) == "$hundredths" ]]
}

# start NAME LOG: `run search --serve` on a free port; sets $started and $addr.
start() {
  COURIER_LOG=info "$bin" --data "$work/$ns/$1" --config "$work/$ns.toml" \
    run search --serve 127.0.0.1:0 2>"$2" &
  started=$!
  pids+=("$started")
  wait_line "$2" "serving search shards" 60
  addr=$(grep -m1 "serving search shards" "$2" | sed 's/.*addr=\([^ ]*\).*/\1/')
}

measure() { # MODE: handover | reindex
  local mode=$1
  ns="handover_${mode}_$$_$RANDOM"
  {
    printf 'namespace = "%s"\n[log]\nbackend = "kafka"\n[kafka]\nbrokers = "%s"\n' "$ns" "$brokers"
    if [[ $mode == handover ]]; then
      printf '[search]\nsnapshot_dir = "%s"\nsnapshot_interval_ms = 1000\n' "$work/snapshots"
    fi
  } >"$work/$ns.toml"
  "$bin" --data "$work/$ns/p" --config "$work/$ns.toml" topics apply >/dev/null
  "$bin" --data "$work/$ns/p" --config "$work/$ns.toml" produce --file "$stream" >/dev/null
  start a "$work/$ns.a.log"
  local a=$started a_addr=$addr
  until exact "$a_addr"; do sleep 0.2; done
  if [[ $mode == handover ]]; then
    # A snapshot covering the whole partition (its next offset: every record).
    local want
    want=$(printf '%020d' $((messages + 1)))
    until compgen -G "$work/snapshots/$ns/search/g0/p*/$want-*" >/dev/null; do sleep 0.2; done
  fi
  kill -KILL "$a"
  wait "$a" 2>/dev/null || true
  local t0 t1 ta=
  t0=$(now)
  start b "$work/$ns.b.log"
  # The moment b is given the partitions (a's session has timed out) is seen
  # while waiting, to within a probe (about 0.1 s).
  until exact "$addr"; do
    [[ -z $ta ]] && grep -q "partitions assigned" "$work/$ns.b.log" && ta=$(now)
    sleep 0.05
  done
  t1=$(now)
  [[ -n $ta ]] || ta=$t1
  # Empty partitions are "re-indexed" from nothing in both modes.
  local restored reindexed
  restored=$(grep -c "restored search shard from a snapshot" "$work/$ns.b.log" || true)
  reindexed=$(grep -c "re-indexing it from the partition's start" "$work/$ns.b.log" || true)
  local says="$restored shards restored from snapshots, $reindexed re-indexed"
  printf '%-8s %8d messages: b answered exactly %6.1f s after it was assigned the partitions, %6.1f s after its start (%s)\n' \
    "$mode" "$messages" "$(awk -v a="$ta" -v b="$t1" 'BEGIN { print b - a }')" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$says"
  kill -TERM "$started" 2>/dev/null || true
  wait "$started" 2>/dev/null || true
}

[[ ${ONLY:-} == reindex ]] || measure handover
[[ ${ONLY:-} == handover ]] || measure reindex
