#!/usr/bin/env bash
# The invariants of docs/ARCHITECTURE.md ("Invariants"), enforced by the crate
# graph: what each crate does not know. Every check lists a crate's normal
# dependencies (no dev- or build-dependencies: tests and benches may link
# backends) with `cargo tree`, and fails naming each forbidden crate it finds and
# how it got in. No build needed; the whole script takes a few seconds.
#
#   scripts/check-crate-graph.sh      (run by .ci/run, stage "crate graph")
set -euo pipefail
cd "$(dirname "$0")/.."

# Crates by what they stand for.
log_backends="rocksdb librocksdb-sys rdkafka rdkafka-sys"
view_stores="rocksdb librocksdb-sys scylla tantivy"
http="hyper axum"
cli="clap"
runtime="tokio"

failures=0

# forbid INVARIANT CARGO-TREE-ARGS... -- FORBIDDEN-CRATE...
forbid() {
  local invariant=$1
  shift
  local args=()
  while [[ $1 != -- ]]; do
    args+=("$1")
    shift
  done
  shift
  local deps
  if ! deps=$(cargo tree "${args[@]}" -e normal --prefix none | sed 's/ .*//' | sort -u); then
    echo "error: cargo tree ${args[*]} failed (above)" >&2
    failures=$((failures + 1))
    return
  fi
  local found=() crate
  for crate in $(printf '%s\n' "$@" | sort -u); do
    if grep -qxF "$crate" <<<"$deps"; then
      found+=("$crate")
    fi
  done
  if ((${#found[@]} == 0)); then
    echo "ok: $invariant"
    return
  fi
  echo "error: $invariant; but \`cargo tree ${args[*]} -e normal\` has: ${found[*]}" >&2
  for crate in "${found[@]}"; do
    echo "  how $crate gets in:" >&2
    cargo tree "${args[@]}" -e normal -i "$crate" 2>&1 | head -n 20 | sed 's/^/    /' >&2 || true
  done
  failures=$((failures + 1))
}

# shellcheck disable=SC2086 # the lists above are meant to split into words
{
  forbid "schemas knows nothing of topics, the pipeline or any backend, HTTP, CLI or runtime" \
    -p courier-schemas -- \
    courier-topics courier-pipeline courier-processors courier-sinks courier-gateway courier-app \
    $log_backends $view_stores $http $cli $runtime

  forbid "topics knows nothing of schemas, the pipeline or any backend, HTTP, CLI or runtime" \
    -p courier-topics -- \
    courier-schemas courier-pipeline courier-processors courier-sinks courier-gateway courier-app \
    $log_backends $view_stores $http $cli $runtime

  forbid "pipeline without features links no log backend, view store, HTTP or CLI, and no crate above it" \
    -p courier-pipeline --no-default-features -- \
    courier-processors courier-sinks courier-gateway courier-app \
    $log_backends $view_stores $http $cli

  forbid "pipeline with both backends still links no view store, HTTP or CLI" \
    -p courier-pipeline --features embedded,kafka -- \
    courier-processors courier-sinks courier-gateway courier-app \
    scylla tantivy $http $cli

  forbid "processors know no backend (log, view store, HTTP) and no CLI" \
    -p courier-processors -- \
    courier-sinks courier-gateway courier-app \
    $log_backends $view_stores $http $cli

  forbid "sinks know no log backend, no HTTP server, no CLI and no gateway" \
    -p courier-sinks -- \
    courier-gateway courier-app \
    rdkafka rdkafka-sys axum $cli

  forbid "gateway knows no log or view-store backend, no sinks and no CLI" \
    -p courier-gateway -- \
    courier-sinks courier-app \
    $log_backends $view_stores $cli

  forbid "search-query (the query side, fuzzed) links no RocksDB or other store, no log, HTTP, CLI or runtime, and no courier crate" \
    -p courier-search-query -- \
    courier-schemas courier-topics courier-pipeline courier-processors courier-sinks courier-gateway courier-app \
    $log_backends rocksdb librocksdb-sys scylla $http $cli $runtime

  # tantivy, through courier-search-query, is the one view-store crate allowed:
  # pure Rust, and its index lives in RAM there.
  forbid "fuzz links no log backend, no view store but tantivy in RAM, and no HTTP" \
    --manifest-path fuzz/Cargo.toml -p courier-fuzz -- \
    courier-sinks courier-gateway courier-app \
    $log_backends rocksdb librocksdb-sys scylla $http
}

if ((failures)); then
  echo "error: $failures crate-graph invariant(s) broken (docs/ARCHITECTURE.md, \"Invariants\")" >&2
  exit 1
fi
