# deploy/local/procs.sh — sourced by the benchmark scripts after env.sh: the CPU the private stack's
# own processes spend, from /proc, so that other work on the machine is not charged to it.
# shellcheck shell=bash

# CPU ticks (user + system) of the given pids, summed (a pid gone is skipped).
ticks() {
    local pid sum=0 stat rest
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        # shellcheck disable=SC2086
        set -- $rest
        sum=$((sum + ${12} + ${13}))
    done
    printf '%s' "$sum"
}

# The private PostgreSQL cluster's postmaster and every process it started.
pg_pids() {
    local master
    master=$(head -n1 "${WHISTLE__PG_DATA:-$WHISTLE_HOME/postgres}/postmaster.pid" 2>/dev/null) || return 0
    printf '%s\n' "$master"
    pgrep -P "$master" || true
}
