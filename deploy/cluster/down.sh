#!/usr/bin/env bash
# deploy/cluster/down.sh — stop the one-machine cluster of deploy/cluster/up.sh and remove its
# network: every process it started (by the pid files in $WHISTLE_CLUSTER_HOME/run, then whatever
# still runs inside its namespaces), its namespaces wh-*, their veths and the bridge whbr0. Safe to
# run twice, or after a failed up.sh. The state (data, secrets, logs) stays for inspection;
# `--purge` deletes $WHISTLE_CLUSTER_HOME too (default $WHISTLE_HOME/cluster). Run as root.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$HERE/../.." && pwd -P)

purge=0
for arg in "$@"; do
    case $arg in
        --purge) purge=1 ;;
        -h | --help) sed -n '2,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "cluster: unknown argument $arg (usage: down.sh [--purge])" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "cluster: error: run as root" >&2; exit 1; }

WHISTLE_ENV_NO_START=1
# shellcheck source=SCRIPTDIR/../local/env.sh
source "$REPO/deploy/local/env.sh"
# shellcheck source=SCRIPTDIR/topology.sh
source "$HERE/topology.sh"
C=$WHISTLE_CLUSTER_HOME
log() { printf 'cluster: %s\n' "$*" >&2; }

# stop PID…: TERM, up to 15 s, then KILL.
stop() {
    local pid i running
    (($#)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        running=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && running=1; done
        ((running)) || return 0
        sleep 0.1
    done
    log "still running after 15 s, killed: $*"
    kill -KILL "$@" 2>/dev/null || true
}

# stop_recorded NAME…: the daemons up.sh recorded in run/NAME.pid.
stop_recorded() {
    local name file pid
    for name in "$@"; do
        file=$C/run/$name.pid
        [[ -s $file ]] || continue
        pid=$(<"$file")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            stop "$pid"
            log "stopped $name (pid $pid)"
        fi
        rm -f -- "$file"
    done
}

# The balancer and the services first, while PostgreSQL and NATS still answer (dispatch's graceful
# stop finishes its batch), then PostgreSQL, then the NATS nodes.
stop_recorded haproxy query1 query2 dispatch1 dispatch2

# PostgreSQL with pg_ctl (a fast shutdown, a clean checkpoint).
for node in pg2 pg1; do
    data=$C/pg/$node
    [[ -e $data/postmaster.pid ]] || continue
    owner=$(stat -c %U -- "$data")
    bindir=${WHISTLE_PG_BINDIR:-/usr/lib/postgresql/$(<"$data/PG_VERSION")/bin}
    if (cd / && runuser -u "$owner" -- "$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1); then
        log "stopped PostgreSQL $node"
    fi
done

stop_recorded nats1 nats2 nats3

# Whatever still runs in the cluster's namespaces (a process up.sh started that its pid file missed).
for entry in "${WHISTLE_CLUSTER_NODES[@]}"; do
    name=${entry%% *}
    ns=$(whistle_cluster_ns "$name")
    ip netns list 2>/dev/null | grep -qw -- "$ns" || continue
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    if ((${#pids[@]})); then
        stop "${pids[@]}"
        log "stopped what still ran in $ns: ${pids[*]}"
    fi
    ip netns del "$ns"
done

# The veths went with their namespaces; a host side left by a failed up.sh, and the bridge.
for entry in "${WHISTLE_CLUSTER_NODES[@]}"; do
    veth=$(whistle_cluster_veth "${entry%% *}")
    ip link show "$veth" >/dev/null 2>&1 && ip link del "$veth"
done
if ip link show "$WHISTLE_CLUSTER_BRIDGE" >/dev/null 2>&1; then
    ip link del "$WHISTLE_CLUSTER_BRIDGE"
fi
log "down: no wh-* namespace, veth or bridge $WHISTLE_CLUSTER_BRIDGE left"

if ((purge)); then
    case $C in
        / | "$HOME" | "$REPO" | "") echo "cluster: error: refusing to delete $C" >&2; exit 1 ;;
    esac
    rm -rf -- "$C"
    log "deleted $C"
fi
