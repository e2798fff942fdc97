#!/usr/bin/env bash
# deploy/local/bench-capacity.sh — the inputs of docs/scale.md's capacity model, measured on the
# platform as deploy/local/run.sh runs it, and the model checked at the rates between.
#
#   deploy/local/bench-capacity.sh [--rates 'R1 R2 …'] [--duration D] [--find-max]
#
# Starts the local stack with run.sh (the real Ordos policy, no demo feed, the release binaries of
# CARGO_TARGET_DIR as they are: WHISTLE_SKIP_BUILD=1), then for each rate (default 200, 500 and 800
# reports a second) sends `whistle load --rate R --duration D --drain 20s` (the city mix; default
# D = 60s) and prints, per report sent: the CPU each of the stack's own processes added (nats-server,
# whistle-dispatch, whistle-query, the private PostgreSQL's processes; from /proc, so other work on
# the machine is not charged; what they spend idle, measured first for 30 s, taken off), the bytes
# the database and the JetStream store grew by, the intake batches and events dispatch made, and
# the cores the stack used at that rate (µs a report × outcomes a second). The model — µs a report
# = r + c × batches a report — is fitted through the lowest and highest rates and checked at each
# rate between them. --find-max then searches the highest sustained rate (`whistle load
# --find-max`).
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

rates=(200 500 800) duration=60s find_max=0
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

# Each window is "before|after" snapshots; figures.py turns them into a table. What the stack spends
# when nothing comes (heartbeats, maintenance, the checkpointer) is measured first and taken off
# every window, so a report's CPU is what it adds.
figures=$(mktemp)
trap 'rm -f -- "$figures"; kill -TERM "$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true' EXIT
cat >"$figures" <<'PY'
import json, sys
hz = int(sys.argv[1])
def window(text):
    b, a = [list(map(float, s.split())) for s in text.split("|")]
    return [a[i] - b[i] for i in range(8)]
idle = window(sys.argv[2])
idle_rate = [idle[i] / idle[7] for i in range(4)]
print(f'{"idle":>6} {"":>8} {"":>9} ' + " ".join(f"{idle_rate[i] / hz:9.3f}" for i in range(4))
      + f' {"":>10} {"":>10} {"":>10} {sum(idle_rate) / hz:7.3f}  (cores)')
points = []
batches_before = 0
for text, load in zip(sys.argv[3::2], sys.argv[4::2]):
    w, load = window(text), json.loads(load)
    sent, wall = load["sent"], w[7]
    us = [(w[i] - idle_rate[i] * wall) / hz * 1e6 / sent for i in range(4)]
    rate = load["outcome_rate"]
    # Intake batches since dispatch started ($SRV.STATS), so this window's are the difference.
    batches = sum(b["batches"] for b in load["dispatch_batches"])
    per_report = (batches - batches_before) / sent
    batches_before = batches
    points.append((rate, per_report, sum(us)))
    print(f'{load["offered_rate"]:6.0f} {rate:8.0f} {sum(us):9.1f} ' + " ".join(f"{u:9.1f}" for u in us)
          + f' {per_report:8.3f} {w[4] / sent:10.0f} {w[5] / sent:10.2f} {w[6] / sent:10.0f} {sum(us) * rate / 1e6:7.3f}'
          + (f'  ({load["missing"]} without an outcome)' if load["missing"] else ""))
# The model: a report costs its own work r plus a share of its batch's fixed work c (a
# transaction, its round trips, the acks): µs a report = r + c × batches a report. Fitted through
# the lowest and the highest rate, checked at every rate between.
(_, x0, y0), (_, x1, y1) = points[0], points[-1]
c = (y0 - y1) / (x0 - x1)
r = y0 - c * x0
print(f"model: µs a report = {r:.1f} + {c:.1f} × batches a report (through the lowest and highest rates)")
for rate, x, y in points[1:-1]:
    predicted = r + c * x
    print(f"model at {rate:.0f}/s ({x:.3f} batches a report): {predicted:.1f} µs predicted, {y:.1f} measured ({predicted / y - 1:+.0%})")
PY
hz=$(getconf CLK_TCK)
log "letting the start settle 30 s, then 30 s without load"
sleep 30
before=$(snapshot)
sleep 30
idle="$before|$(snapshot)"
windows=()
seed=1
for rate in "${rates[@]}"; do
    log "sending $rate reports a second for $duration"
    before=$(snapshot)
    out=$("$WHISTLE_BIN" load --rate "$rate" --duration "$duration" --drain 20s --quiet --json --seed "$seed" \
        2>"$LOGS/bench-capacity-load-$rate.log")
    windows+=("$before|$(snapshot)" "$out")
    seed=$((seed + 1))
done
printf '%6s %8s %9s %9s %9s %9s %9s %8s %10s %10s %10s %7s\n' rate outcomes/s "µs/report" dispatch query nats \
    postgres batches/r "PG B/rep" "events/rep" "JS B/rep" cores
python3 "$figures" "$hz" "$idle" "${windows[@]}"
if ((find_max)); then
    log "searching the highest sustained rate: whistle load --find-max"
    "$WHISTLE_BIN" load --find-max --quiet --seed "$seed" --start-rate 400 --step-factor 1.2 \
        2>"$LOGS/bench-capacity-find-max.log" | sed -n '1,/^highest sustained rate/p'
fi
