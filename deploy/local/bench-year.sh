#!/usr/bin/env bash
# deploy/local/bench-year.sh — a simulated year on an accelerated clock, for benchmarks only
# (docs/benchmarks.md, "Memory over a simulated year").
#
# Starts the local stack with run.sh (no demo feed, the real Ordos policy, no command rate limit) with
# dispatch and the query service on the benchmark clock WHISTLE_BENCH_CLOCK, then runs
# `whistle bench year` on the same clock, which files the reports, closes their incidents and prints
# the resident memory of both services every simulated week. Stops the services at the end (NATS
# and PostgreSQL keep running; deploy/local/down.sh stops them).
#
#   deploy/local/bench-year.sh [whistle bench year options…]
#
# Settings (environment): BENCH_SPEED (simulated seconds per wall-clock second, default 21600: a
# simulated day in 4 s, a year in about 24 minutes), BENCH_START (the simulated start, default
# 2027-01-01T00:00:00+08:00), BENCH_CSV (a CSV of the samples, default
# $WHISTLE_HOME/bench-year.csv), and run.sh's and env.sh's (WHISTLE_HOME, WHISTLE_PG_PORT,
# WHISTLE_NATS_PORT, WHISTLE_QUERY_LISTEN, WHISTLE_BIN, WHISTLE_DISPATCH_BIN, WHISTLE_QUERY_BIN…).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/paths.sh
source "$HERE/paths.sh"
WHISTLE_BIN=${WHISTLE_BIN:-$TARGET_DIR/release/whistle}
export WHISTLE_HOME=${WHISTLE_HOME:-$REPO/.whistle}
mkdir -p -- "$WHISTLE_HOME/logs"

# The anchor lies a minute ahead, so the stack is up before the simulated year begins.
anchor=$(date -u -d '+60 seconds' +%Y-%m-%dT%H:%M:%SZ)
export WHISTLE_BENCH_CLOCK="start=${BENCH_START:-2027-01-01T00:00:00+08:00},anchor=$anchor,speed=${BENCH_SPEED:-21600}"
export WHISTLE_POLICY=ordos WHISTLE_NO_FEED=1 WHISTLE_SKIP_BUILD=1 WHISTLE_COMMAND_RATE=0
# The console is not part of the benchmark: a placeholder page, so run.sh builds nothing.
if [[ -z ${WHISTLE_CONSOLE_DIR:-} ]]; then
    export WHISTLE_CONSOLE_DIR=$WHISTLE_HOME/no-console
    mkdir -p -- "$WHISTLE_CONSOLE_DIR"
    echo '<!doctype html><title>Whistle benchmark</title><p>No console in a benchmark run.' >"$WHISTLE_CONSOLE_DIR/index.html"
fi

stack_log=$WHISTLE_HOME/logs/bench-year-stack.log
"$HERE/run.sh" >/dev/null 2>"$stack_log" &
stack=$!
trap 'kill -TERM "$stack" 2>/dev/null; wait "$stack" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    grep -q 'the platform runs' "$stack_log" 2>/dev/null && break
    kill -0 "$stack" 2>/dev/null || { cat "$stack_log" >&2; exit 1; }
    sleep 1
done
dispatch_pid=$(sed -n 's/^  dispatch      pid \([0-9]*\),.*/\1/p' "$stack_log")
query_pid=$(sed -n 's/^  query .* pid \([0-9]*\),.*/\1/p' "$stack_log")
[[ -n $dispatch_pid && -n $query_pid ]] || { cat "$stack_log" >&2; exit 1; }

WHISTLE_NATS_NKEY_FILE=$WHISTLE_HOME/secrets/admin.nk \
    WHISTLE_NATS_URL=nats://127.0.0.1:${WHISTLE_NATS_PORT:-54222} \
    "$WHISTLE_BIN" bench year --dispatch-pid "$dispatch_pid" --query-pid "$query_pid" \
    --query-metrics "http://${WHISTLE_QUERY_LISTEN:-127.0.0.1:50051}/metrics" \
    --csv "${BENCH_CSV:-$WHISTLE_HOME/bench-year.csv}" "$@"
