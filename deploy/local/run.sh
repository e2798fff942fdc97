#!/usr/bin/env bash
# deploy/local/run.sh — run the platform on this machine.
#
# Starts (or reuses) NATS and PostgreSQL through env.sh, builds the binaries, migrates and seeds the
# database, builds the web console (console.sh), starts whistle-dispatch (on the compressed demo policy),
# whistle-query (the console at /, gRPC, gRPC-web and /metrics on WHISTLE_QUERY_LISTEN, default
# 127.0.0.1:50051) with sign-in links for an operator, a liaison and a grid worker printed for it, and
# `whistle simulate` (grid workers, street staff, department liaisons and follow-ups acting
# together) in the background, and shows what happens (`whistle watch`) in the foreground. Ctrl-C
# stops them; NATS and PostgreSQL keep running with their data (deploy/local/down.sh stops them).
#
# Settings (environment): WHISTLE_DEMO_RATE (reports per second, default 3), WHISTLE_POLICY (default
# ordos-demo), WHISTLE_NO_FEED=1 (no simulation), WHISTLE_SKIP_BUILD=1 (use the binaries and the
# console as they are), WHISTLE_CONSOLE_DIR (a built console to serve), the binaries' paths below, and
# env.sh's.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$HERE/../.." && pwd -P)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac

# The binaries, and how to build them.
WHISTLE_BIN=${WHISTLE_BIN:-$TARGET_DIR/release/whistle}
WHISTLE_DISPATCH_BIN=${WHISTLE_DISPATCH_BIN:-$TARGET_DIR/release/whistle-dispatch}
WHISTLE_QUERY_BIN=${WHISTLE_QUERY_BIN:-$TARGET_DIR/release/whistle-query}
BUILD_CMD=(cargo build --release --bin whistle --bin whistle-dispatch --bin whistle-query)
export WHISTLE_QUERY_LISTEN=${WHISTLE_QUERY_LISTEN:-127.0.0.1:50051}

DEMO_RATE=${WHISTLE_DEMO_RATE:-3}
# The demo runs on the compressed policy (minutes instead of hours) so every state shows within
# minutes; WHISTLE_POLICY=ordos runs the real deadlines.
export WHISTLE_POLICY=${WHISTLE_POLICY:-ordos-demo}
NO_FEED=${WHISTLE_NO_FEED:-0}
SKIP_BUILD=${WHISTLE_SKIP_BUILD:-0}

# shellcheck source=SCRIPTDIR/env.sh
source "$HERE/env.sh"
cd "$REPO"

LOGS=$WHISTLE_HOME/logs
DISPATCH_LOG=$LOGS/dispatch.log
QUERY_LOG=$LOGS/query.log
FEED_LOG=$LOGS/load.log
DISPATCH_PID=""
QUERY_PID=""
FEED_PID=""
WATCH_PID=""

log() { printf 'whistle: %s\n' "$*" >&2; }
die() {
    printf 'whistle: error: %s\n' "$*" >&2
    exit 1
}

# Stop what this script started (watch, the feed, query, dispatch), politely first: dispatch finishes
# its batch.
# shellcheck disable=SC2317  # called from the traps
cleanup() {
    trap - INT TERM EXIT
    local pid name i stopped=""
    for pid in $WATCH_PID $FEED_PID $QUERY_PID $DISPATCH_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $WATCH_PID $FEED_PID $QUERY_PID $DISPATCH_PID; do
        name=dispatch
        [[ $pid == "$FEED_PID" ]] && name="demo feed"
        [[ $pid == "$QUERY_PID" ]] && name=query
        [[ $pid == "$WATCH_PID" ]] && name=watch
        for ((i = 0; i < 200; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) did not stop within 20 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
        [[ $name == watch ]] || stopped+="${stopped:+, }$name"
    done
    if [[ -n $stopped ]]; then
        log "stopped $stopped; NATS and PostgreSQL keep running (deploy/local/down.sh stops them)"
    fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

if [[ $SKIP_BUILD != 1 ]]; then
    log "building: ${BUILD_CMD[*]}"
    "${BUILD_CMD[@]}"
fi
if [[ $SKIP_BUILD != 1 || -z ${WHISTLE_CONSOLE_DIR:-} ]]; then
    # shellcheck source=SCRIPTDIR/console.sh
    source "$HERE/console.sh"
fi
for bin in "$WHISTLE_BIN" "$WHISTLE_DISPATCH_BIN" "$WHISTLE_QUERY_BIN"; do
    [[ -x $bin ]] || die "$bin is missing or not executable (set WHISTLE_BIN / WHISTLE_DISPATCH_BIN / WHISTLE_QUERY_BIN?)"
done

log "migrating the database: whistle migrate"
"$WHISTLE_BIN" migrate
log "seeding the demo organisation: whistle seed"
"$WHISTLE_BIN" seed

# Residents' contacts are sealed with a keyring the operator keeps (docs/operations.md); the local
# stack makes one once and keeps it with its secrets.
export WHISTLE_CONTACT_KEYS=${WHISTLE_CONTACT_KEYS:-$WHISTLE_HOME/secrets/contact-keys}
if [[ ! -f $WHISTLE_CONTACT_KEYS ]]; then
    log "making the contact keyring: whistle contacts keygen > $WHISTLE_CONTACT_KEYS"
    mkdir -p -- "$(dirname -- "$WHISTLE_CONTACT_KEYS")"
    (umask 077 && "$WHISTLE_BIN" contacts keygen local-1 >"$WHISTLE_CONTACT_KEYS")
fi

mkdir -p -- "$LOGS"
# start_service BIN LOG: runs BIN in the background with its output appended to LOG, and fails with
# the log's tail if it exits within a second. Sets STARTED_PID.
start_service() {
    local bin=$1 logfile=$2 pid status
    printf '\n=== %s: starting %s\n' "$(date -Is)" "$bin" >>"$logfile"
    "$bin" </dev/null >>"$logfile" 2>&1 &
    pid=$!
    sleep 1
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" && status=0 || status=$?
        printf 'whistle: error: %s exited at start (status %s); last lines of %s:\n' \
            "$(basename -- "$bin")" "$status" "$logfile" >&2
        tail -n 25 -- "$logfile" | sed 's/^/whistle:   | /' >&2
        exit 1
    fi
    STARTED_PID=$pid
}
start_service "$WHISTLE_DISPATCH_BIN" "$DISPATCH_LOG"
DISPATCH_PID=$STARTED_PID
start_service "$WHISTLE_QUERY_BIN" "$QUERY_LOG"
QUERY_PID=$STARTED_PID
# A fresh city operator token for this run (stored hashed; `whistle token list` shows them all).
TOKEN_FILE=$WHISTLE_HOME/operator.token
(umask 077 && "$WHISTLE_BIN" token create --role operator --area 150600 --label "deploy/local/run.sh" >"$TOKEN_FILE")
# Sign-in links for the demo: the console takes the token from the link and forgets the link.
DEMO_DEPARTMENT=150602-urban_management
DEMO_GRID=150602001001001
LIAISON_TOKEN=$("$WHISTLE_BIN" token create --role liaison --department "$DEMO_DEPARTMENT" --label "deploy/local/run.sh")
GRID_TOKEN=$("$WHISTLE_BIN" token create --role grid_worker --area "$DEMO_GRID" --label "deploy/local/run.sh")
CONSOLE_URL=http://$WHISTLE_QUERY_LISTEN

if [[ $NO_FEED == 1 ]]; then
    feed_line="off (WHISTLE_NO_FEED=1)"
else
    printf '\n=== %s: starting %s simulate --rate %s\n' "$(date -Is)" "$WHISTLE_BIN" "$DEMO_RATE" >>"$FEED_LOG"
    "$WHISTLE_BIN" simulate --rate "$DEMO_RATE" </dev/null >>"$FEED_LOG" 2>&1 &
    FEED_PID=$!
    feed_line="whistle simulate: $DEMO_RATE reports/s with liaisons, street staff and follow-ups, pid $FEED_PID, log $FEED_LOG"
fi

watch_cmd=$(printf '%q ' "WHISTLE_NATS_URL=$WHISTLE_NATS_URL" "DATABASE_URL=$DATABASE_URL" "$WHISTLE_BIN" watch)
{
    printf 'whistle: the platform runs\n'
    printf '  NATS          %s\n' "$WHISTLE_NATS_URL"
    printf '  PostgreSQL    %s\n' "$DATABASE_URL"
    printf '  policy        %s\n' "$WHISTLE_POLICY"
    printf '  dispatch      pid %s, log %s\n' "$DISPATCH_PID" "$DISPATCH_LOG"
    printf '  query         gRPC + gRPC-web on %s, metrics http://%s/metrics, pid %s, log %s\n' \
        "$WHISTLE_QUERY_LISTEN" "$WHISTLE_QUERY_LISTEN" "$QUERY_PID" "$QUERY_LOG"
    printf '  console       %s/  (sign in with a token, or open a link below)\n' "$CONSOLE_URL"
    printf '    指挥大屏    %s/#/screen?token=%s  (city operator)\n' "$CONSOLE_URL" "$(cat -- "$TOKEN_FILE")"
    printf '    部门工作台  %s/#/workbench?token=%s  (liaison of %s)\n' "$CONSOLE_URL" "$LIAISON_TOKEN" "$DEMO_DEPARTMENT"
    printf '    网格上报    %s/#/report?token=%s  (grid worker of %s)\n' "$CONSOLE_URL" "$GRID_TOKEN" "$DEMO_GRID"
    printf '  token         city operator, in %s: %s\n' "$TOKEN_FILE" "$(cat -- "$TOKEN_FILE")"
    printf '  try           grpcurl -plaintext -H "authorization: Bearer $(cat %s)" %s whistle.v1.CommandCenter/GetOverview\n' \
        "$TOKEN_FILE" "$WHISTLE_QUERY_LISTEN"
    printf '  demo feed     %s\n' "$feed_line"
    printf '  server logs   %s/nats-server.log, %s/postgres.log\n' "$LOGS" "$LOGS"
    printf '  watch         %s\n' "${watch_cmd% }"
    printf '  stop          Ctrl-C (stops dispatch, query and the feed; deploy/local/down.sh stops NATS and PostgreSQL)\n'
    printf 'whistle: incidents as they happen (whistle watch):\n'
} >&2

# watch runs as a child that the script waits for, so that a signal to the script (Ctrl-C, kill) is
# handled at once rather than when watch exits; stdin stays the terminal's.
"$WHISTLE_BIN" watch <&0 &
WATCH_PID=$!
status=0
wait "$WATCH_PID" || status=$?
WATCH_PID=""
exit "$status"
