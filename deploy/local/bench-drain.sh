#!/usr/bin/env bash
# deploy/local/bench-drain.sh — intake's drain against the ceiling pipeline's drain, like for like, on
# fresh servers, several runs alternated (docs/benchmarks.md; issue "Toward the limit").
#
#   deploy/local/bench-drain.sh [--runs N] [--reports N] [--legacy-mix] [--no-ceiling]
#                               [--variant NAME=ENV[@SQL] …] [--perf]
#
# Each run, for each variant in turn: the private nats-server restarted on an empty stream store (the
# authenticated configuration of `whistle nats-config`), the streams created, a fresh database
# (`whistle db roles`, `migrate`, `seed`, then the variant's SQL file as the owner, if any); N reports queued while
# dispatch is stopped (`whistle load --rate 20000 --drain 0s`, the city mix, or --legacy-mix); then
# whistle-dispatch started (`--no-contacts --no-migrate`) and timed from its first to its last
# "batch committed", with the CPU that dispatch, nats-server and every PostgreSQL process of the
# private cluster spent meanwhile (from /proc). Then, unless --no-ceiling, the ceiling pipeline on the
# same servers: `whistle bench ceiling --only pipeline --reports N --rate 0`. The last lines are the
# medians per variant and of the ceiling.
#
# --perf also samples every process of the machine during each platform drain (`perf record -a`, 499 Hz,
# no call graphs) into $WHISTLE_HOME/logs/bench-drain-NAME-RUN.perf.data; read it with
# `perf report -i FILE --sort comm,dso,sym --stdio`.
#
# A variant is a name, environment settings for dispatch (comma-separated) and optionally an SQL file
# run after the seed (`--variant base=` is the default: a single variant with neither); e.g.
# `--variant today= --variant wal=@wal-settings.sql --variant lanes=WHISTLE_INTAKE_LANES=2`.
#
# Release binaries of CARGO_TARGET_DIR (or WHISTLE_BIN, WHISTLE_DISPATCH_BIN); the servers of env.sh
# (WHISTLE_HOME, WHISTLE_PG_PORT, WHISTLE_NATS_PORT). It takes the private servers over: stop whatever
# else uses them first. Nothing here runs in the test suite: timing belongs to benchmarks.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/paths.sh
source "$HERE/paths.sh"
WHISTLE_BIN=${WHISTLE_BIN:-$TARGET_DIR/release/whistle}
WHISTLE_DISPATCH_BIN=${WHISTLE_DISPATCH_BIN:-$TARGET_DIR/release/whistle-dispatch}

runs=3 reports=60000 mix=() ceiling=1 variants=() perf=0
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --reports) reports=$2; shift 2 ;;
        --legacy-mix) mix=(--legacy-mix); shift ;;
        --no-ceiling) ceiling=0; shift ;;
        --perf) perf=1; shift ;;
        --variant) variants+=("$2"); shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-drain: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
((${#variants[@]})) || variants=("base=")
for bin in "$WHISTLE_BIN" "$WHISTLE_DISPATCH_BIN"; do
    [[ -x $bin ]] || { echo "bench-drain: no $bin (cargo build --release)" >&2; exit 1; }
done
for variant in "${variants[@]}"; do
    [[ $variant == *=* ]] || { echo "bench-drain: a variant is NAME=ENV[@SQL], not $variant" >&2; exit 2; }
    file=${variant#*=}
    [[ $file != *@* || -r ${file#*@} ]] || { echo "bench-drain: cannot read ${file#*@}" >&2; exit 1; }
done

WHISTLE_ENV_NO_NATS=1
# shellcheck source=SCRIPTDIR/env.sh
source "$HERE/env.sh"
unset WHISTLE_ENV_NO_NATS
# shellcheck source=SCRIPTDIR/procs.sh
source "$HERE/procs.sh"
log() { printf 'bench-drain: %s\n' "$*" >&2; }

SECRETS=$WHISTLE_HOME/secrets
LOGS=$WHISTLE_HOME/logs
mkdir -p -- "$LOGS"
"$WHISTLE_BIN" nats-config --secrets "$SECRETS" --port "${WHISTLE_NATS_PORT:-54222}" \
    --store-dir "$WHISTLE_HOME/nats" --output "$WHISTLE_HOME/nats.conf" >/dev/null
ADMIN_URL=${DATABASE_URL%/*}/whistle_drain
ADMIN_PASSFILE=${PGPASSFILE:-}
export WHISTLE_NATS_NKEY_FILE=$SECRETS/admin.nk

# Empty stream store, fresh database; $1: an SQL file to run as the owner after the seed, or "".
fresh_servers() {
    local sql=$1
    whistle__stop_nats >/dev/null 2>&1
    rm -rf -- "$WHISTLE_HOME/nats"
    whistle_nats_up
    # Photos play no part here; a small bucket leaves the disk's reservation to the streams.
    "$WHISTLE_BIN" streams --photo-max-gib 1 >/dev/null
    psql -q -X -v ON_ERROR_STOP=1 -d "${DATABASE_URL%/*}/postgres" \
        -c 'DROP DATABASE IF EXISTS whistle_drain WITH (FORCE)' -c 'CREATE DATABASE whistle_drain' >/dev/null
    local roles
    roles=$(DATABASE_URL=$ADMIN_URL PGPASSFILE=$ADMIN_PASSFILE "$WHISTLE_BIN" db roles --secrets "$SECRETS")
    whistle__roles "$roles" || { echo "bench-drain: whistle db roles printed: $roles" >&2; exit 1; }
    DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE "$WHISTLE_BIN" migrate >/dev/null
    DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE "$WHISTLE_BIN" seed >/dev/null
    if [[ -n $sql ]]; then
        PGPASSFILE=$OWNER_PASSFILE psql -q -X -v ON_ERROR_STOP=1 -d "$OWNER_URL" -f "$sql" >/dev/null
    fi
}

# One platform run of variant $1 (its environment $2, its SQL file $3) with seed $4; prints
# "name drain/s µs-a-report pg dispatch nats".
platform_run() {
    local name=$1 settings=$2 sql=$3 seed=$4 log=$LOGS/bench-drain-$1-$4.log
    fresh_servers "$sql"
    "$WHISTLE_BIN" load --rate 20000 --duration "$((reports / 20000))s" --drain 0s --quiet --seed "$seed" \
        "${mix[@]}" >"$LOGS/bench-drain-load.log" 2>&1
    local nats pgs before_pg before_nats
    nats=$(whistle__nats_pid)
    mapfile -t pgs < <(pg_pids)
    before_pg=$(ticks "${pgs[@]}") before_nats=$(ticks "$nats")
    # shellcheck disable=SC2086  # the variant's settings are words
    env $settings RUST_LOG=info,sqlx=warn,async_nats=warn,whistle_dispatch=debug DATABASE_URL="$DISPATCH_URL" PGPASSFILE="$DISPATCH_PASSFILE" \
        WHISTLE_NATS_URL="$WHISTLE_NATS_URL" "$WHISTLE_DISPATCH_BIN" --nats-nkey-file "$SECRETS/dispatch.nk" \
        --no-contacts --no-migrate >"$log" 2>&1 &
    local dispatch=$! last=-1 now done_at recorder=""
    if ((perf)); then
        perf record -a -F 499 -q -o "${log%.log}.perf.data" >/dev/null 2>&1 &
        recorder=$!
    fi
    # Done when no batch has been committed for 3 s after the first.
    while sleep 1; do
        now=$(grep -c 'batch committed' "$log" || true)
        if ((now > 0 && now == last)); then
            done_at=$((done_at + 1))
            ((done_at >= 3)) && break
        else
            done_at=0
        fi
        last=$now
        kill -0 "$dispatch" 2>/dev/null || { tail -n 20 "$log" >&2; return 1; }
    done
    mapfile -t pgs < <(pg_pids)
    local pg_t nats_t dispatch_t hz
    pg_t=$(($(ticks "${pgs[@]}") - before_pg)) nats_t=$(($(ticks "$nats") - before_nats))
    dispatch_t=$(ticks "$dispatch")
    if [[ -n $recorder ]]; then
        kill -INT "$recorder"
        wait "$recorder" || true
    fi
    kill -TERM "$dispatch"
    wait "$dispatch" || true
    hz=$(getconf CLK_TCK)
    # The drain: first to last "batch committed" (RFC 3339 timestamps of the log).
    python3 - "$log" "$reports" "$hz" "$pg_t" "$dispatch_t" "$nats_t" "$name" <<'EOF'
import re, sys
from datetime import datetime
log, reports, hz, pg, dispatch, nats, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:7]), sys.argv[7]
stamps = []
for line in open(log, encoding="utf-8", errors="replace"):
    if "batch committed" in line:
        m = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line)
        if m:
            stamps.append(datetime.fromisoformat(m.group(0).replace("Z", "+00:00")))
span = (stamps[-1] - stamps[0]).total_seconds()
us = lambda t: t / hz * 1e6 / reports
print(f"{name} {reports / span:.0f} {us(pg + dispatch + nats):.1f} {us(pg):.1f} {us(dispatch):.1f} {us(nats):.1f}")
EOF
}

ceiling_run() {
    fresh_servers ""
    DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE "$WHISTLE_BIN" bench ceiling --only pipeline \
        --reports "$reports" --rate 0 --json 2>/dev/null |
        python3 -c 'import json,sys; f=json.load(sys.stdin); p=f["pipeline"]; print("ceiling", round(p["per_second"]))'
}

results=()
printf '%-10s %4s %10s %12s %8s %9s %8s\n' variant run drain/s "µs/report" PG dispatch nats
for ((run = 1; run <= runs; run++)); do
    for variant in "${variants[@]}"; do
        name=${variant%%=*} settings=${variant#*=} file=""
        if [[ $settings == *@* ]]; then file=${settings#*@} settings=${settings%%@*}; fi
        settings=${settings//,/ }
        line=$(platform_run "$name" "$settings" "$file" "$run")
        read -r n drain cpu pg dis nat <<<"$line"
        printf '%-10s %4s %10s %12s %8s %9s %8s\n' "$n" "$run" "$drain" "$cpu" "$pg" "$dis" "$nat"
        results+=("$line")
    done
    if ((ceiling)); then
        line=$(ceiling_run)
        printf '%-10s %4s %10s\n' ceiling "$run" "${line#* }"
        results+=("$line")
    fi
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
rows = {}
for line in sys.stdin:
    name, drain, *rest = line.split()
    rows.setdefault(name, []).append(float(drain))
ceiling = statistics.median(rows["ceiling"]) if "ceiling" in rows else None
for name, drains in rows.items():
    m = statistics.median(drains)
    share = f", {100 * m / ceiling:.0f} % of the ceiling median" if ceiling and name != "ceiling" else ""
    print(f"median {name}: {m:.0f}/s over {len(drains)} runs{share}")
'
