#!/usr/bin/env bash
# deploy/local/bench-reads.sh — latency of the screens' read RPCs on a city-sized database, one
# query-service build against another, alternated.
#
#   deploy/local/bench-reads.sh [--incidents N] [--days D] [--runs R] [--reuse]
#                               [--variant NAME=PATH-TO-whistle-query]… [--read 'ARGS']…
#                               [--beside 'ARGS' --read-beside 'ARGS'…]
#
# It fills database "whistle_reads" of the private PostgreSQL (env.sh) with `whistle bench fill
# --incidents N --days D` (default 1,000,000 over 5 days; --reuse keeps the database of an earlier
# run), runs VACUUM ANALYZE, then R times (default 3) for each variant in turn: starts that
# whistle-query (--rate-limit 0 --rate-burst 0, the query role, on a fresh port), waits until its
# live aggregates have loaded (GetOverview answers), and runs `whistle bench query ARGS` for each
# --read (default: ListOverdue of the city, a district and a street, 500 items, 300 requests at a
# concurrency of 4). Each line printed is one `bench query` summary, prefixed with the variant and
# the run; logs go to $WHISTLE_HOME/logs/bench-reads-*. Variants default to "current" =
# $CARGO_TARGET_DIR/release/whistle-query. Nothing else of the stack runs: no dispatch, no load.
# A --read-beside read runs while a second `whistle bench query --beside-ARGS` client loads the
# same service (started 2 s before, stopped after): how one caller's crowd slows another's reads.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/paths.sh
source "$HERE/paths.sh"
WHISTLE_BIN=${WHISTLE_BIN:-$TARGET_DIR/release/whistle}

incidents=1000000 days=5 runs=3 reuse=0 variants=() reads=() beside=""
while (($#)); do
    case $1 in
        --incidents) incidents=$2; shift 2 ;;
        --days) days=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --reuse) reuse=1; shift ;;
        --variant) variants+=("$2"); shift 2 ;;
        --read) reads+=("$2"); shift 2 ;;
        --beside) beside=$2; shift 2 ;;
        --read-beside) reads+=("beside|$2"); shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-reads: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
((${#variants[@]})) || variants=("current=$TARGET_DIR/release/whistle-query")
((${#reads[@]})) || reads=(
    "--rpc overdue --area 150600 --page-size 500 --requests 300 --concurrency 4"
    "--rpc overdue --area 150602 --page-size 500 --requests 300 --concurrency 4"
    "--rpc overdue --area 150602001 --page-size 500 --requests 300 --concurrency 4"
)
[[ -x $WHISTLE_BIN ]] || { echo "bench-reads: no $WHISTLE_BIN (cargo build --release)" >&2; exit 1; }
for read in "${reads[@]}"; do
    [[ $read != beside\|* || -n $beside ]] ||
        { echo "bench-reads: --read-beside needs --beside 'ARGS' (the crowd beside it)" >&2; exit 2; }
done
for variant in "${variants[@]}"; do
    [[ $variant == *=* && -x ${variant#*=} ]] ||
        { echo "bench-reads: a variant is NAME=PATH of an executable whistle-query, not $variant" >&2; exit 2; }
done

WHISTLE_ENV_NO_NATS=1
# shellcheck source=SCRIPTDIR/env.sh
source "$HERE/env.sh"
unset WHISTLE_ENV_NO_NATS
log() { printf 'bench-reads: %s\n' "$*" >&2; }

SECRETS=$WHISTLE_HOME/secrets
LOGS=$WHISTLE_HOME/logs
mkdir -p -- "$LOGS"
# The auth callout of whistle-query needs NATS; the streams hold nothing here.
"$WHISTLE_BIN" nats-config --secrets "$SECRETS" --port "${WHISTLE_NATS_PORT:-54222}" \
    --store-dir "$WHISTLE_HOME/nats" --output "$WHISTLE_HOME/nats.conf" >/dev/null
whistle_nats_up
export WHISTLE_NATS_NKEY_FILE=$SECRETS/admin.nk
"$WHISTLE_BIN" streams --report-max-gib 1 --event-max-gib 1 --rejected-max-gib 1 --photo-max-gib 1 >/dev/null

ADMIN_URL=${DATABASE_URL%/*}/whistle_reads
if ((!reuse)); then
    psql -q -X -v ON_ERROR_STOP=1 -d "${DATABASE_URL%/*}/postgres" \
        -c 'DROP DATABASE IF EXISTS whistle_reads WITH (FORCE)' -c 'CREATE DATABASE whistle_reads' >/dev/null
fi
roles=$(DATABASE_URL=$ADMIN_URL "$WHISTLE_BIN" db roles --secrets "$SECRETS")
whistle__roles "$roles" || { echo "bench-reads: whistle db roles printed: $roles" >&2; exit 1; }
owner() { DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE "$@"; }
if ((!reuse)); then
    owner "$WHISTLE_BIN" migrate >/dev/null
    owner "$WHISTLE_BIN" seed >/dev/null
    log "filling: whistle bench fill --incidents $incidents --days $days"
    start=$(date +%s)
    owner "$WHISTLE_BIN" bench fill --incidents "$incidents" --days "$days" >"$LOGS/bench-reads-fill.log" 2>&1
    log "filled in $(($(date +%s) - start)) s; VACUUM ANALYZE"
    PGPASSFILE=$OWNER_PASSFILE psql -q -X -v ON_ERROR_STOP=1 -d "$OWNER_URL" -c 'SET client_min_messages = error' -c 'VACUUM ANALYZE' >/dev/null
fi
TOKEN=$(owner "$WHISTLE_BIN" token create --role operator --area 150600 --label bench-reads | tail -n1)
export WHISTLE_TOKEN=$TOKEN

QUERY_PID=""
stop_query() {
    [[ -n $QUERY_PID ]] || return 0
    kill -TERM "$QUERY_PID" 2>/dev/null || true
    wait "$QUERY_PID" 2>/dev/null || true
    QUERY_PID=""
}
trap stop_query EXIT

port=50190
for ((run = 1; run <= runs; run++)); do
    for variant in "${variants[@]}"; do
        name=${variant%%=*} bin=${variant#*=}
        port=$((port + 1))
        listen=127.0.0.1:$port qlog=$LOGS/bench-reads-$name-$run.log
        DATABASE_URL=$QUERY_URL PGPASSFILE=$QUERY_PASSFILE WHISTLE_NATS_URL=$WHISTLE_NATS_URL \
            "$bin" --listen "$listen" --nats-nkey-file "$SECRETS/query.nk" \
            --callout-nkey-file "$SECRETS/auth-callout.nk" --callout-issuer-file "$SECRETS/auth-issuer.nk" \
            --rate-limit 0 --rate-burst 0 >"$qlog" 2>&1 &
        QUERY_PID=$!
        start=$(date +%s)
        until "$WHISTLE_BIN" --query-url "http://$listen" bench query --rpc overview --requests 1 \
            >/dev/null 2>&1; do
            kill -0 "$QUERY_PID" 2>/dev/null || { tail -n 20 "$qlog" >&2; exit 1; }
            (($(date +%s) - start < 600)) || { log "$name: not ready after 600 s"; exit 1; }
            sleep 1
        done
        log "$name run $run: ready in $(($(date +%s) - start)) s, resident $(awk '/^VmRSS/ {print $2, $3}' "/proc/$QUERY_PID/status")"
        for read in "${reads[@]}"; do
            crowd=""
            if [[ $read == beside\|* ]]; then
                read=${read#beside|}
                # shellcheck disable=SC2086  # words of `bench query`
                "$WHISTLE_BIN" --query-url "http://$listen" bench query $beside >/dev/null 2>&1 &
                crowd=$!
                sleep 2
            fi
            # shellcheck disable=SC2086  # a read is words of `bench query`
            out=$("$WHISTLE_BIN" --query-url "http://$listen" bench query $read 2>&1 | tail -n1)
            if [[ -n $crowd ]]; then
                kill -0 "$crowd" 2>/dev/null || { log "the crowd beside ($beside) ended before the read did"; exit 1; }
                kill "$crowd"
                wait "$crowd" 2>/dev/null || true
                read="$read, beside $beside"
            fi
            printf '%s run %s | %s | %s\n' "$name" "$run" "$read" "$out"
        done
        stop_query
    done
done
