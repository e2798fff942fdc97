#!/usr/bin/env bash
# deploy/local/bench-capacity.sh — the inputs of docs/scale.md's capacity model, measured on the
# platform as deploy/local/run.sh runs it, and the model checked against a second rate.
#
#   deploy/local/bench-capacity.sh [--rates 'R1 R2 …'] [--duration D] [--find-max]
#
# Starts the local stack with run.sh (the real Ordos policy, no demo feed, the release binaries of
# CARGO_TARGET_DIR as they are: WHISTLE_SKIP_BUILD=1), then for each rate (default 200 and 800
# reports a second) sends `whistle load --rate R --duration D --drain 20s` (the city mix; default
# D = 60s) and prints, per report sent: the CPU of each of the stack's own processes (nats-server,
# whistle-dispatch, whistle-query, the private PostgreSQL's processes; from /proc, so other work on
# the machine is not charged), the bytes the database and the JetStream store grew by, the events
# dispatch wrote, and the
# cores the stack used on average. The last line predicts the cores at the last rate from the first
# rate's CPU a report, beside what was measured. --find-max then searches the highest sustained
# rate (`whistle load --find-max`), to set beside 2 cores / the CPU a report.
#
# It uses (and leaves running) the private servers of env.sh (WHISTLE_HOME, WHISTLE_PG_PORT,
# WHISTLE_NATS_PORT) and the database run.sh uses; stop other users of them first. Nothing here runs
# in the test suite.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/paths.sh
source "$HERE/paths.sh"
export WHISTLE_BIN=${WHISTLE_BIN:-$TARGET_DIR/release/whistle}
export WHISTLE_DISPATCH_BIN=${WHISTLE_DISPATCH_BIN:-$TARGET_DIR/release/whistle-dispatch}
export WHISTLE_QUERY_BIN=${WHISTLE_QUERY_BIN:-$TARGET_DIR/release/whistle-query}

rates=(200 800) duration=60s find_max=0
while (($#)); do
    case $1 in
        --rates) read -r -a rates <<<"$2"; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --find-max) find_max=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-capacity: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for bin in "$WHISTLE_BIN" "$WHISTLE_DISPATCH_BIN" "$WHISTLE_QUERY_BIN"; do
    [[ -x $bin ]] || { echo "bench-capacity: no $bin (cargo build --release)" >&2; exit 1; }
done

WHISTLE_ENV_NO_NATS=1
# shellcheck source=SCRIPTDIR/env.sh
source "$HERE/env.sh"
unset WHISTLE_ENV_NO_NATS
# shellcheck source=SCRIPTDIR/procs.sh
source "$HERE/procs.sh"
log() { printf 'bench-capacity: %s\n' "$*" >&2; }

LOGS=$WHISTLE_HOME/logs
mkdir -p -- "$LOGS"
stack_log=$LOGS/bench-capacity-stack.log
log "starting the stack: run.sh with the ordos policy and no feed (output in $stack_log)"
# Stream bounds of 1-2 GiB: JetStream reserves them on the disk, and a run writes far less.
WHISTLE_STREAMS_ARGS="--report-max-gib 2 --event-max-gib 2 --rejected-max-gib 1 --photo-max-gib 1" \
    WHISTLE_NO_FEED=1 WHISTLE_SKIP_BUILD=1 WHISTLE_POLICY=ordos bash "$HERE/run.sh" </dev/null >"$stack_log" 2>&1 &
stack=$!
trap 'kill -TERM "$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true' EXIT
until grep -q 'incidents as they happen' "$stack_log"; do
    kill -0 "$stack" 2>/dev/null || { tail -n 30 "$stack_log" >&2; exit 1; }
    sleep 1
done

export WHISTLE_NATS_URL=nats://127.0.0.1:${WHISTLE_NATS_PORT:-54222}
export WHISTLE_NATS_NKEY_FILE=$WHISTLE_HOME/secrets/admin.nk
# The stack's processes by group: run.sh's children are dispatch, query and watch.
declare -A group_pids=()
for pid in $(pgrep -P "$stack"); do
    case $(cat "/proc/$pid/comm") in
        whistle-dispatc*) group_pids[dispatch]+=" $pid" ;;
        whistle-query) group_pids[query]+=" $pid" ;;
    esac
done
group_pids[nats]=$(whistle__nats_pid)
[[ -n ${group_pids[dispatch]:-} && -n ${group_pids[query]:-} && -n ${group_pids[nats]} ]] ||
    { log "did not find dispatch, query and nats-server among the stack's processes"; exit 1; }
# The database's size, and the events dispatch has written (each an outbox row, numbered by its sequence).
db_state() { psql -qAtX -F ' ' -d "$DATABASE_URL" -c "SELECT pg_database_size('whistle'), last_value FROM outbox_id_seq"; }
js_bytes() { du -sb "$WHISTLE_HOME/nats" | cut -f1; }
snapshot() {
    local g
    for g in dispatch query nats; do
        # shellcheck disable=SC2086  # pids are words
        printf '%s ' "$(ticks ${group_pids[$g]})"
    done
    mapfile -t pgs < <(pg_pids)
    printf '%s %s %s %s\n' "$(ticks "${pgs[@]}")" "$(db_state)" "$(js_bytes)" "$(date +%s.%N)"
}

hz=$(getconf CLK_TCK)
first_us=""
printf '%6s %8s %9s %9s %9s %9s %9s %10s %10s %10s %7s\n' rate outcomes "µs/report" dispatch query nats postgres "PG B/rep" "events/rep" "JS B/rep" cores
seed=1
for rate in "${rates[@]}"; do
    before=$(snapshot)
    out=$("$WHISTLE_BIN" load --rate "$rate" --duration "$duration" --drain 20s --quiet --json --seed "$seed" 2>"$LOGS/bench-capacity-load-$rate.log")
    after=$(snapshot)
    seed=$((seed + 1))
    line=$(python3 - "$hz" "$before" "$after" "$out" <<'PY'
import json, sys
hz = int(sys.argv[1])
b, a = [list(map(float, s.split())) for s in sys.argv[2:4]]
load = json.loads(sys.argv[4])
sent = load["sent"]
us = [(a[i] - b[i]) / hz * 1e6 / sent for i in range(4)]
db, events, js = ((a[i] - b[i]) / sent for i in (4, 5, 6))
cores = sum(a[i] - b[i] for i in range(4)) / hz / (a[7] - b[7])
print(f'{load["offered_rate"]:.0f} {load["outcome_rate"]:.0f} {sum(us):.1f} {us[0]:.1f} {us[1]:.1f} {us[2]:.1f} {us[3]:.1f} {db:.0f} {events:.2f} {js:.0f} {cores:.2f} {load["missing"]}')
PY
)
    read -r r outcomes total d q n p db events js cores missing <<<"$line"
    printf '%6s %8s %9s %9s %9s %9s %9s %10s %10s %10s %7s\n' "$r" "$outcomes" "$total" "$d" "$q" "$n" "$p" "$db" "$events" "$js" "$cores"
    ((missing == 0)) || log "rate $rate: $missing reports had no outcome (see $LOGS/bench-capacity-load-$rate.log)"
    [[ -n $first_us ]] || first_us=$total first_rate=$r
    last_us=$total last_rate=$r last_cores=$cores
done
python3 -c "
f, fr, l, lr, lc = map(float, '$first_us $first_rate $last_us $last_rate $last_cores'.split())
print(f'model: {f:.1f} µs a report at {fr:.0f}/s predicts {lr * f / 1e6:.2f} cores at {lr:.0f}/s; measured {lc:.2f} '
      f'({lr * f / 1e6 / lc - 1:+.0%}); 2 cores / {f:.1f} µs = {2e6 / f:.0f} reports/s at full use')"
if ((find_max)); then
    log "searching the highest sustained rate: whistle load --find-max"
    "$WHISTLE_BIN" load --find-max --quiet --seed "$seed" --start-rate 400 --step-factor 1.2 \
        2>"$LOGS/bench-capacity-find-max.log" | sed -n '1,/^highest sustained rate/p'
fi
