#!/usr/bin/env bash
# deploy/cluster/services.sh — starting and stopping the cluster's processes, sourced by up.sh and
# failover.sh (one definition of how each service runs, so a failover restarts them exactly as
# up.sh started them, only with another primary).
#
# The caller sets C (the cluster's home), BIN, SECRETS, NATS_URLS, CONTACT_KEYS, CONSOLE_DIR,
# DISPATCH_URL/_PASSFILE and QUERY_URL/_PASSFILE (whistle__roles), and has sourced topology.sh
# and the local stack's env.sh.

# in_ns NODE CMD…: run CMD in node's namespace.
in_ns() { local node=$1; shift; ip netns exec "$(whistle_cluster_ns "$node")" "$@"; }

# daemon NODE NAME CMD…: start CMD in node's namespace in a session of its own, output to
# logs/NAME.log, pid in run/NAME.pid (down.sh stops it by that pid).
daemon() {
    local node=$1 name=$2
    shift 2
    rm -f -- "$C/run/$name.pid"
    printf '\n=== %s: %s\n' "$(date -Is)" "$*" >>"$C/logs/$name.log"
    # shellcheck disable=SC2016  # $$ and $1 are the inner bash's
    ip netns exec "$(whistle_cluster_ns "$node")" setsid -f bash -c 'echo "$$" >"$1"; shift; exec "$@"' \
        "whistle-$name" "$C/run/$name.pid" "$@" </dev/null >>"$C/logs/$name.log" 2>&1
    local i
    for ((i = 0; i < 50; i++)); do [[ -s $C/run/$name.pid ]] && break; sleep 0.1; done
}

# wait_tcp HOST PORT WHAT [SECONDS]
wait_tcp() {
    local deadline=$(($(date +%s) + ${4:-30}))
    until whistle__tcp_open "$1" "$2"; do
        (($(date +%s) < deadline)) || die "$3 did not listen on $1:$2 (logs in $C/logs)"
        sleep 0.3
    done
}

# alive NAME: the process of run/NAME.pid runs, or die with its log.
alive() {
    local pid
    pid=$(cat "$C/run/$1.pid" 2>/dev/null) || pid=""
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        whistle__tail "$C/logs/$1.log"
        die "$1 is not running"
    fi
}

# stop_daemon NAME [SECONDS]: SIGTERM the process of run/NAME.pid and wait up to SECONDS (30) for
# it to end, then SIGKILL it. A service stops gracefully when it can (dispatch hands its intake
# lease over); killed, it loses nothing either, as nothing uncommitted was acked.
stop_daemon() {
    local pid i
    pid=$(cat "$C/run/$1.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < ${2:-30} * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# start_services STANDBY: the two dispatch replicas and the two query replicas on the database of
# DISPATCH_URL/QUERY_URL, the query replicas reading what tolerates staleness from the standby at
# address STANDBY (empty: none, every read from the primary).
start_services() {
    local standby=$1 n addr standby_env=()
    for n in 1 2; do
        daemon "dispatch$n" "dispatch$n" env DATABASE_URL="$DISPATCH_URL" PGPASSFILE="$DISPATCH_PASSFILE" \
            WHISTLE_NATS_URL="$NATS_URLS" "$BIN/whistle-dispatch" --nats-nkey-file "$SECRETS/dispatch.nk" \
            --contact-keys "$CONTACT_KEYS"
    done
    if [[ -n $standby ]]; then
        # The query role's URL with the standby's address: same role, same password file.
        local host=${QUERY_URL#*@}
        host=${host%%:*}
        standby_env=(WHISTLE_QUERY_REPLICA_DATABASE_URL="${QUERY_URL/@$host:/@$standby:}")
    fi
    for n in 1 2; do
        addr=$(whistle_cluster_ip "query$n")
        daemon "query$n" "query$n" env DATABASE_URL="$QUERY_URL" PGPASSFILE="$QUERY_PASSFILE" \
            "${standby_env[@]}" \
            WHISTLE_NATS_URL="$NATS_URLS" "$BIN/whistle-query" --listen "$addr:50051" \
            --nats-nkey-file "$SECRETS/query.nk" --callout-nkey-file "$SECRETS/auth-callout.nk" \
            --callout-issuer-file "$SECRETS/auth-issuer.nk" --callout-revoker-file "$SECRETS/auth-revoker.nk" \
            --contact-keys "$CONTACT_KEYS" --console-dir "$CONSOLE_DIR"
    done
    for n in 1 2; do wait_tcp "$(whistle_cluster_ip "query$n")" 50051 "query$n" 60; done
    for name in dispatch1 dispatch2 query1 query2; do alive "$name"; done
}
