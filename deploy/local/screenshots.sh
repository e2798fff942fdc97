#!/usr/bin/env bash
# deploy/local/screenshots.sh — regenerate docs/screenshots from a platform that holds only the
# seeded organisation and the simulation's data.
#
# Screenshots taken on a developer's running stack showed what browser tests had left there
# ("改派目录测试", "离线上报二 …"). This script never uses a running stack: it starts run.sh with a
# throwaway home of its own (WHISTLE_HOME, default <repo>/.whistle-screenshots, deleted first and
# at the end) on ports of its own, lets `whistle simulate` play the city for
# WHISTLE_SCREENSHOT_WARMUP seconds (default 480: every state shows on the demo policy), runs
# `npm run screenshots` (e2e/screenshots.mjs; its offline reports are never sent) with the tokens
# run.sh made, and stops everything.
#
# Settings: WHISTLE_SCREENSHOT_DIR (default docs/screenshots), WHISTLE_SCREENSHOT_WARMUP, and run.sh's
# (WHISTLE_SKIP_BUILD=1 with WHISTLE_BIN, WHISTLE_DISPATCH_BIN, WHISTLE_QUERY_BIN and
# WHISTLE_CONSOLE_DIR to use binaries and a console already built).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$HERE/../.." && pwd -P)

# Nothing of another stack: its servers and secrets are not ours to show.
unset DATABASE_URL WHISTLE_NATS_URL WHISTLE_SECRETS WHISTLE_PRIVATE_NATS_URL
export WHISTLE_HOME=${WHISTLE_SCREENSHOT_HOME:-$REPO/.whistle-screenshots}
export WHISTLE_PG_PORT=${WHISTLE_SCREENSHOT_PG_PORT:-57432}
export WHISTLE_NATS_PORT=${WHISTLE_SCREENSHOT_NATS_PORT:-57222}
export WHISTLE_QUERY_LISTEN=${WHISTLE_SCREENSHOT_LISTEN:-127.0.0.1:50081}
WARMUP=${WHISTLE_SCREENSHOT_WARMUP:-480}
OUT=${WHISTLE_SCREENSHOT_DIR:-$REPO/docs/screenshots}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac

log() { printf 'whistle: %s\n' "$*" >&2; }

purge() { "$HERE/down.sh" --purge >/dev/null 2>&1 || true; }
RUN_PID=""
# shellcheck disable=SC2317  # called from the trap
finish() {
    trap - EXIT INT TERM
    if [[ -n $RUN_PID ]]; then
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    purge
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

purge
mkdir -p -- "$WHISTLE_HOME"
# Outside the home, which goes at the end: kept to read after a failure.
RUN_LOG=${TMPDIR:-/tmp}/whistle-screenshots-run.log
log "starting a fresh platform in $WHISTLE_HOME (log $RUN_LOG)"
"$HERE/run.sh" </dev/null >"$RUN_LOG" 2>&1 &
RUN_PID=$!
for ((i = 0; ; i++)); do
    [[ -s $WHISTLE_HOME/grid.token ]] && break
    kill -0 "$RUN_PID" 2>/dev/null || {
        tail -n 30 -- "$RUN_LOG" >&2
        log "error: run.sh stopped before the platform was up"
        exit 1
    }
    ((i < 3600)) || {
        log "error: the platform did not come up within an hour"
        exit 1
    }
    sleep 1
done
log "the simulation plays the city for ${WARMUP}s"
sleep "$WARMUP"

log "taking the screenshots into $OUT"
(
    cd "$REPO/services/whistle-query/console"
    WHISTLE_CONSOLE_URL=http://$WHISTLE_QUERY_LISTEN \
        WHISTLE_OPERATOR_TOKEN=$(cat -- "$WHISTLE_HOME/operator.token") \
        WHISTLE_LIAISON_TOKEN=$(cat -- "$WHISTLE_HOME/liaison.token") \
        WHISTLE_GRID_TOKEN=$(cat -- "$WHISTLE_HOME/grid.token") \
        WHISTLE_MEMBER_TOKEN=$(cat -- "$WHISTLE_HOME/member.token") \
        WHISTLE_LEADER_TOKEN=$(cat -- "$WHISTLE_HOME/leader.token") \
        WHISTLE_DRILL_DISTRICT=150602 \
        WHISTLE_SCREENSHOT_DIR=$OUT \
        npm run --silent screenshots
)
log "screenshots saved in $OUT"
