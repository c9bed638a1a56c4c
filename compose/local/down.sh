#!/usr/bin/env bash
# down.sh: stop the local Kafka and/or Cassandra started by up.sh (by PID: SIGTERM, wait,
# then SIGKILL after COURIER_LOCAL_STOP_TIMEOUT seconds) and remove their pid files.
#
#   compose/local/down.sh                    # stop both
#   compose/local/down.sh kafka              # stop only Kafka
#   compose/local/down.sh --wipe [SERVICE]   # stop and delete their data, logs and config
#                                            # (the installed jars in the cache stay)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WIPE=0
LOCK=1
ARGS=()
for arg in "$@"; do
  case "$arg" in
    --wipe) WIPE=1 ;;
    --no-lock) LOCK=0 ;; # used by up.sh, which already holds the lock
    -h | --help)
      sed -n '2,8p' "$0"
      exit 0
      ;;
    *) ARGS+=("$arg") ;;
  esac
done
parse_services "${ARGS[@]+"${ARGS[@]}"}"

if [ "$LOCK" -eq 1 ] && [ -d "$COURIER_LOCAL_STATE" ]; then
  exec 9>"$COURIER_LOCAL_STATE/.lock"
  flock -w 600 9 || die "another up.sh/down.sh holds $COURIER_LOCAL_STATE/.lock"
fi

# SIGTERM to every named service first, so they shut down side by side.
declare -A PIDS=()
for svc in "${SERVICES[@]}"; do
  pf="$(pid_file "$svc")"
  if pid="$(running_pid "$svc")"; then
    log "$svc: stopping pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    PIDS[$svc]="$pid"
  elif [ -f "$pf" ]; then
    log "$svc: not running (removing stale pid file $pf)"
    rm -f "$pf"
  else
    log "$svc: not running"
  fi
done

# Then wait for each, with SIGKILL once STOP_TIMEOUT has passed.
deadline=$((SECONDS + STOP_TIMEOUT))
t0=$SECONDS
for svc in "${!PIDS[@]}"; do
  pid="${PIDS[$svc]}"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$svc: still alive after $STOP_TIMEOUT s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  rm -f "$(pid_file "$svc")"
  log "$svc: stopped (pid $pid) after $((SECONDS - t0)) s"
done

if [ "$WIPE" -eq 1 ]; then
  for svc in "${SERVICES[@]}"; do
    dir="$(state_dir "$svc")"
    if [ -d "$dir" ]; then
      log "$svc: wiping $dir"
      rm -rf -- "$dir"
    fi
  done
fi

if [ "$WIPE" -eq 1 ] && [ -d "$COURIER_LOCAL_STATE" ] && [ ! -d "$KAFKA_STATE" ] && [ ! -d "$CASSANDRA_STATE" ]; then
  rm -f -- "$COURIER_LOCAL_STATE/.lock"
  rmdir -- "$COURIER_LOCAL_STATE" 2>/dev/null || true
fi
