#!/usr/bin/env bash
# The embedded quickstart: a conversation goes through the log and comes back out.
# Usage: scripts/demo.sh COURIER_BINARY DATA_DIR
set -euo pipefail
courier=${1:?courier binary}
data=${2:?data dir}
here=$(cd "$(dirname "$0")/.." && pwd)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$data"
step "$courier" --data "$data" produce --file "$here/examples/chat.jsonl"
step "$courier" --data "$data" topics list
step "$courier" --data "$data" replay courier.conversations.v1 --conversation c-team --format json
step "$courier" --data "$data" run inbox --until-caught-up
step "$courier" --data "$data" inbox u-bob --json
step "$courier" --data "$data" messages c-team --as u-bob --json
step "$courier" --data "$data" run presence --until-caught-up
step "$courier" --data "$data" presence u-bob --json
printf '\nEverything above lives in %s; run `%s --data %s --help` for more.\n' "$data" "$courier" "$data"
