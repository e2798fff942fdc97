#!/usr/bin/env bash
# deploy/cluster/up.sh — a production-shaped Whistle on this one machine, every node in its own
# network namespace (docs/operations.md, "A cluster on one machine"):
#
#   wh-nats1..3      nats-server, one JetStream cluster (routes authenticated with the secrets'
#                    route password, TLS on routes with a local CA), the WHISTLE_* streams at R3
#   wh-pg1, wh-pg2   PostgreSQL primary and a streaming hot standby (pg_basebackup -R, the role
#                    whistle_replicator, the physical replication slot whistle_standby)
#   wh-dispatch1..2  whistle-dispatch replicas (one holds the intake lease, both serve commands)
#   wh-query1..2     whistle-query replicas (gRPC, gRPC-web, the console, each running the auth callout),
#                    reading from the standby what tolerates staleness (docs/query.md)
#   wh-lb            HAProxy (Debian's package): gRPC over h2c on :50051, the console and gRPC-web
#                    over HTTP on :8080, round robin over the query replicas, health-checked
#
# joined by veth pairs to the bridge whbr0 (10.77.0.0/24; this namespace is 10.77.0.1), so that a
# partition is a real one. Run as root:
#
#   deploy/cluster/up.sh [--build] [--release] [--console] [--no-route-tls]
#
#   --build         cargo build the three binaries first (debug, or release with --release)
#   --release       use $CARGO_TARGET_DIR/release (default: release if all three binaries are there,
#                   else debug)
#   --console       build the web console (deploy/local/console.sh, needs Node.js) and serve it;
#                   without it the query replicas serve a page saying so (gRPC-web works either way)
#   --no-route-tls  routes authenticate with the password only
#
# Prints the balancer's addresses and how to get an operator token. deploy/cluster/down.sh stops and
# removes everything (its state stays in $WHISTLE_CLUSTER_HOME, default $WHISTLE_HOME/cluster,
# unless --purge). It refuses to start over a cluster that runs: run down.sh first.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/../local/paths.sh
source "$HERE/../local/paths.sh"

build=0 profile="" console=0 route_tls=1
while (($#)); do
    case $1 in
        --build) build=1 ;;
        --release) profile=release ;;
        --console) console=1 ;;
        --no-route-tls) route_tls=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The local stack's helpers (installing nats-server and PostgreSQL, logging), without its servers.
WHISTLE_ENV_NO_START=1
# shellcheck source=SCRIPTDIR/../local/env.sh
source "$REPO/deploy/local/env.sh"
# shellcheck source=SCRIPTDIR/topology.sh
source "$HERE/topology.sh"
# shellcheck source=SCRIPTDIR/services.sh
source "$HERE/services.sh"

log() { printf 'cluster: %s\n' "$*" >&2; }
trap 'printf "cluster: up.sh failed (line %s); deploy/cluster/down.sh removes what it started\n" "$LINENO" >&2' ERR
die() {
    printf 'cluster: error: %s; deploy/cluster/down.sh removes what was started\n' "$*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || die "run as root: it creates network namespaces, veths and a bridge"
command -v ip >/dev/null 2>&1 || whistle__apt_install iproute2 || die "iproute2 is needed"
if ip link show "$WHISTLE_CLUSTER_BRIDGE" >/dev/null 2>&1; then
    die "the bridge $WHISTLE_CLUSTER_BRIDGE exists: a cluster is up (deploy/cluster/down.sh first)"
fi

C=$WHISTLE_CLUSTER_HOME
mkdir -p -- "$C/logs" "$C/run"
# The local stack's installers log to $WHISTLE_HOME/logs.
mkdir -p -- "$WHISTLE_HOME/logs"

# ---------------------------------------------------------------------------------------------
# binaries and packages

if ((build)); then
    cmd=(cargo build --bin whistle --bin whistle-dispatch --bin whistle-query)
    [[ $profile == release ]] && cmd+=(--release)
    log "building: ${cmd[*]}"
    (cd "$REPO" && "${cmd[@]}")
fi
if [[ -z $profile ]]; then
    profile=debug
    [[ -x $TARGET_DIR/release/whistle && -x $TARGET_DIR/release/whistle-dispatch &&
        -x $TARGET_DIR/release/whistle-query ]] && profile=release
fi
BIN=$TARGET_DIR/$profile
for bin in whistle whistle-dispatch whistle-query; do
    [[ -x $BIN/$bin ]] || die "no $BIN/$bin (deploy/cluster/up.sh --build${profile/debug/})"
done
WHISTLE=$BIN/whistle
whistle_ensure_nats_bin || exit 1
whistle_ensure_pg_bindir || exit 1
PGBIN=$WHISTLE__PG_BINDIR
command -v haproxy >/dev/null 2>&1 || whistle__apt_install haproxy || exit 1
command -v openssl >/dev/null 2>&1 || whistle__apt_install openssl || exit 1
# PostgreSQL refuses to run as root.
if getent passwd postgres >/dev/null 2>&1; then PGUSER_OS=postgres; else
    getent passwd whistle >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin whistle
    PGUSER_OS=whistle
fi
log "binaries from $BIN; nats-server $WHISTLE_NATS_SERVER_BIN; PostgreSQL $PGBIN (as $PGUSER_OS); $(haproxy -v | head -n1)"

# ---------------------------------------------------------------------------------------------
# the network

ip link add "$WHISTLE_CLUSTER_BRIDGE" type bridge
ip addr add "$WHISTLE_CLUSTER_HOST_IP/24" dev "$WHISTLE_CLUSTER_BRIDGE"
ip link set "$WHISTLE_CLUSTER_BRIDGE" up
for entry in "${WHISTLE_CLUSTER_NODES[@]}"; do
    name=${entry%% *} addr=${entry#* }
    ns=$(whistle_cluster_ns "$name") veth=$(whistle_cluster_veth "$name")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$WHISTLE_CLUSTER_BRIDGE" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
done
log "network: bridge $WHISTLE_CLUSTER_BRIDGE $WHISTLE_CLUSTER_HOST_IP/24, namespaces wh-{nats1,nats2,nats3,pg1,pg2,dispatch1,dispatch2,query1,query2,lb}"

# ---------------------------------------------------------------------------------------------
# NATS: three nodes, routes authenticated (and with TLS), JetStream at R3

SECRETS=$C/secrets
NATS_URLS=""
for n in 1 2 3; do NATS_URLS+="${NATS_URLS:+,}nats://$(whistle_cluster_ip "nats$n"):4222"; done
if ((route_tls)); then
    tls=$C/tls
    if [[ ! -s $tls/ca.crt ]]; then
        (
            umask 077
            mkdir -p -- "$tls"
            openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=Whistle cluster routes CA" \
                -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
        ) || die "making the routes' CA failed"
    fi
    for n in 1 2 3; do
        [[ -s $tls/nats$n.crt ]] && continue
        addr=$(whistle_cluster_ip "nats$n")
        (
            umask 077
            openssl req -newkey rsa:3072 -nodes -subj "/CN=nats$n" -keyout "$tls/nats$n.key" \
                -out "$tls/nats$n.csr" 2>/dev/null
            # Each end of a route verifies the other: server and client use, the node's address.
            printf 'subjectAltName=IP:%s,DNS:nats%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$addr" "$n" \
                >"$tls/nats$n.ext"
            openssl x509 -req -in "$tls/nats$n.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
                -days 825 -extfile "$tls/nats$n.ext" -out "$tls/nats$n.crt" 2>/dev/null
            rm -f -- "$tls/nats$n.csr" "$tls/nats$n.ext"
        ) || die "making nats$n's route certificate failed"
    done
fi
for n in 1 2 3; do
    addr=$(whistle_cluster_ip "nats$n")
    args=(nats-config --secrets "$SECRETS" --host "$addr" --port 4222 --http-port 8222
        --store-dir "$C/nats$n" --server-name "nats$n" --server-tag "node:nats$n" --server-tag dc:this-machine
        --cluster-name whistle --cluster-port 6222 --output "$C/nats$n.conf")
    for m in 1 2 3; do
        ((m == n)) || args+=(--route "$(whistle_cluster_ip "nats$m"):6222")
    done
    if ((route_tls)); then
        args+=(--cluster-tls-cert "$tls/nats$n.crt" --cluster-tls-key "$tls/nats$n.key" --cluster-tls-ca "$tls/ca.crt")
    fi
    "$WHISTLE" "${args[@]}"
    mkdir -p -- "$C/nats$n"
    daemon "nats$n" "nats$n" "$WHISTLE_NATS_SERVER_BIN" -c "$C/nats$n.conf"
done
for n in 1 2 3; do wait_tcp "$(whistle_cluster_ip "nats$n")" 4222 "nats$n"; done
export WHISTLE_NATS_URL=$NATS_URLS WHISTLE_NATS_NKEY_FILE=$SECRETS/admin.nk
# Every node holds a copy of every stream and reserves its byte bound on the one disk the three
# share (the production bounds, 29 GiB, would want that free three times over): 5 GiB a node.
STREAM_BOUNDS=(--report-max-gib 1 --event-max-gib 2 --rejected-max-gib 1 --photo-max-gib 1)
# The cluster elects its meta leader once two nodes see each other; until then stream creation fails.
deadline=$(($(date +%s) + 60))
until out=$("$WHISTLE" streams --replicas 3 --placement-tag dc:this-machine "${STREAM_BOUNDS[@]}" 2>&1); do
    (($(date +%s) < deadline)) || die "creating the streams at R3 failed: $out"
    sleep 1
done
routes="authenticated"
((route_tls)) && routes="with TLS, authenticated"
log "NATS cluster 'whistle' up (routes $routes); streams:"
printf '%s\n' "$out" | sed 's/^/cluster:   /' >&2

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a primary and a streaming hot standby

PG1=$(whistle_cluster_ip pg1) PG2=$(whistle_cluster_ip pg2)
PGDIR=$C/pg
mkdir -p -- "$PGDIR"
chown "$PGUSER_OS:" "$PGDIR"
chmod 700 "$PGDIR"
# as_pg NODE CMD…: a PostgreSQL program in node's namespace as the PostgreSQL user.
as_pg() { local node=$1; shift; in_ns "$node" runuser -u "$PGUSER_OS" -- "$@"; }
random_password() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
mkdir -p -- "$SECRETS"
chmod 700 "$SECRETS"
if [[ ! -s $SECRETS/postgres.password ]]; then
    (umask 077 && random_password >"$SECRETS/postgres.password" && random_password >"$SECRETS/replicator.password")
fi
SUPER_PW=$(<"$SECRETS/postgres.password") REPL_PW=$(<"$SECRETS/replicator.password")
# The superuser's password file for the tools run here (both nodes).
(umask 077 && printf '%s:5432:*:postgres:%s\n%s:5432:*:postgres:%s\n' "$PG1" "$SUPER_PW" "$PG2" "$SUPER_PW" \
    >"$SECRETS/postgres.pgpass")
# The replicator's, readable by the PostgreSQL user only (pg_basebackup and the standby's walreceiver).
(umask 077 && printf '%s:5432:*:whistle_replicator:%s\n' "$PG1" "$REPL_PW" >"$PGDIR/replicator.pgpass")
chown "$PGUSER_OS:" "$PGDIR/replicator.pgpass"

pg_start() {
    local node=$1 addr=$2 data=$PGDIR/$1
    mkdir -p -- "$PGDIR/$node-socket"
    chown "$PGUSER_OS:" "$PGDIR/$node-socket"
    touch "$C/logs/$node.log"
    chown "$PGUSER_OS:" "$C/logs/$node.log"
    as_pg "$node" "$PGBIN/pg_ctl" -D "$data" -l "$C/logs/$node.log" -w -t 60 \
        -o "-c listen_addresses=$addr -c port=5432 -c unix_socket_directories=$PGDIR/$node-socket" start >/dev/null ||
        { whistle__tail "$C/logs/$node.log"; die "PostgreSQL $node did not start"; }
}

if [[ ! -e $PGDIR/pg1/PG_VERSION ]]; then
    pwfile=$(mktemp)
    printf '%s\n' "$SUPER_PW" >"$pwfile"
    chown "$PGUSER_OS" "$pwfile"
    locale_args=(--locale=C.UTF-8)
    locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' || locale_args=(--no-locale)
    as_pg pg1 "$PGBIN/initdb" -D "$PGDIR/pg1" --auth=scram-sha-256 --pwfile="$pwfile" --username=postgres \
        --encoding=UTF8 "${locale_args[@]}" >>"$C/logs/initdb.log" 2>&1 ||
        { rm -f -- "$pwfile"; whistle__tail "$C/logs/initdb.log"; die "initdb failed"; }
    rm -f -- "$pwfile"
    cat >>"$PGDIR/pg1/postgresql.conf" <<EOF

# ---- Whistle cluster on one machine (deploy/cluster/up.sh) ----
max_connections = 200
shared_buffers = 256MB
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
EOF
    cat >>"$PGDIR/pg1/pg_hba.conf" <<EOF
# ---- Whistle cluster (deploy/cluster/up.sh): the cluster's network, passwords checked ----
host replication whistle_replicator $WHISTLE_CLUSTER_NET.0/24 scram-sha-256
host all all $WHISTLE_CLUSTER_NET.0/24 scram-sha-256
EOF
fi
pg_start pg1 "$PG1"
export PGPASSFILE=$SECRETS/postgres.pgpass
psql_primary() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG1" -U postgres -d "${PSQL_DB:-postgres}" "$@"; }
# The replication role and slot, and the database (idempotent). The password travels on stdin.
printf "SET password_encryption = 'scram-sha-256';
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'whistle_replicator') THEN
    CREATE ROLE whistle_replicator WITH REPLICATION LOGIN;
  END IF;
END \$\$;
ALTER ROLE whistle_replicator PASSWORD '%s';
SELECT pg_create_physical_replication_slot('whistle_standby')
  WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'whistle_standby');
" "$REPL_PW" | psql_primary -f - >/dev/null
[[ $(psql_primary -tAc "SELECT 1 FROM pg_database WHERE datname = 'whistle'") == 1 ]] ||
    psql_primary -c 'CREATE DATABASE whistle'
if [[ ! -e $PGDIR/pg2/PG_VERSION ]]; then
    # A base backup over the replication protocol from the standby's own namespace; -R writes
    # standby.signal and primary_conninfo, -S makes it stream through the slot.
    as_pg pg2 env PGPASSFILE="$PGDIR/replicator.pgpass" "$PGBIN/pg_basebackup" -h "$PG1" -p 5432 \
        -U whistle_replicator -D "$PGDIR/pg2" -R -S whistle_standby -X stream -c fast \
        >>"$C/logs/basebackup.log" 2>&1 || { whistle__tail "$C/logs/basebackup.log"; die "pg_basebackup failed"; }
    # primary_conninfo names the password file; the standby's walreceiver reads it.
    grep -q passfile "$PGDIR/pg2/postgresql.auto.conf" ||
        sed -i "s|^primary_conninfo = '|primary_conninfo = 'passfile=$PGDIR/replicator.pgpass |" \
            "$PGDIR/pg2/postgresql.auto.conf"
fi
pg_start pg2 "$PG2"
deadline=$(($(date +%s) + 30))
until [[ $(psql_primary -tAc "SELECT state FROM pg_stat_replication WHERE application_name = 'walreceiver' OR client_addr = '$PG2'" 2>/dev/null) == streaming ]]; do
    (($(date +%s) < deadline)) || { whistle__tail "$C/logs/pg2.log"; die "the standby is not streaming"; }
    sleep 0.5
done
log "PostgreSQL: primary $PG1:5432, hot standby $PG2:5432 streaming through slot whistle_standby"

# ---------------------------------------------------------------------------------------------
# the database's roles, schema, the org; the contact keyring

DATABASE_URL=postgres://postgres@$PG1:5432/whistle
export DATABASE_URL
roles_out=$("$WHISTLE" db roles --secrets "$SECRETS")
whistle__roles "$roles_out" || die "whistle db roles printed: $roles_out"
DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE "$WHISTLE" migrate >/dev/null
DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE "$WHISTLE" seed >/dev/null
CONTACT_KEYS=$SECRETS/contact-keys
[[ -s $CONTACT_KEYS ]] || (umask 077 && "$WHISTLE" contacts keygen cluster-1 >"$CONTACT_KEYS")
log "database whistle migrated and seeded (roles' passwords in $SECRETS/<role>.pgpass)"

# ---------------------------------------------------------------------------------------------
# dispatch and query replicas

export WHISTLE_POLICY=${WHISTLE_POLICY:-ordos}
if ((console)); then
    # shellcheck source=SCRIPTDIR/../local/console.sh
    source "$REPO/deploy/local/console.sh"
    CONSOLE_DIR=$WHISTLE_CONSOLE_DIR
else
    CONSOLE_DIR=$C/no-console
    mkdir -p -- "$CONSOLE_DIR"
    printf '<!doctype html><meta charset="utf-8"><title>Whistle cluster</title><p>This cluster was started without the web console (deploy/cluster/up.sh --console builds it); gRPC and gRPC-web are served.\n' \
        >"$CONSOLE_DIR/index.html"
fi
# The query replicas read what tolerates staleness from the standby (same role, same password
# file), within --max-replica-lag-ms, and the rest from the primary (docs/query.md).
start_services "$PG2"
# What failover.sh needs to start the services again as here.
printf 'BIN=%q\nPGBIN=%q\nPGUSER_OS=%q\nCONSOLE_DIR=%q\n' "$BIN" "$PGBIN" "$PGUSER_OS" "$CONSOLE_DIR" >"$C/run/up.env"
log "dispatch replicas in wh-dispatch1, wh-dispatch2; query replicas on $(whistle_cluster_ip query1):50051, $(whistle_cluster_ip query2):50051"

# ---------------------------------------------------------------------------------------------
# the load balancer

LB=$(whistle_cluster_ip lb)
servers_h2="" servers_h1=""
for n in 1 2; do
    servers_h2+="    server query$n $(whistle_cluster_ip "query$n"):50051 proto h2 check inter 1s fall 2 rise 2"$'\n'
    servers_h1+="    server query$n $(whistle_cluster_ip "query$n"):50051 check inter 1s fall 2 rise 2"$'\n'
done
cat >"$C/haproxy.cfg" <<EOF
# Rendered by deploy/cluster/up.sh.
global
    log stderr format raw local0 info
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    # WatchEvents and the console's streams stay open for as long as a screen watches.
    timeout tunnel 1h
    option httpchk GET /metrics
    http-check expect status 200

# gRPC (HTTP/2 without TLS, h2c) for tonic, grpcurl and the CLI.
frontend grpc
    bind $LB:50051 proto h2
    default_backend query_grpc

# The console and gRPC-web (HTTP/1.1, and h2c when a client offers it).
frontend web
    bind $LB:8080
    default_backend query_web

backend query_grpc
    balance roundrobin
$servers_h2
backend query_web
    balance roundrobin
$servers_h1
EOF
haproxy -c -f "$C/haproxy.cfg" >/dev/null || die "haproxy refuses $C/haproxy.cfg"
daemon lb haproxy haproxy -db -f "$C/haproxy.cfg"
wait_tcp "$LB" 50051 haproxy
wait_tcp "$LB" 8080 haproxy
alive haproxy

# ---------------------------------------------------------------------------------------------
# an operator, and what to do next

TOKEN_FILE=$C/operator.token
(umask 077 && DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE "$WHISTLE" token create --role operator \
    --area 150600 --label "deploy/cluster/up.sh" >"$TOKEN_FILE")
{
    printf 'cluster: up\n'
    printf '  NATS          %s (cluster "whistle", JetStream R3; monitoring http://%s:8222/jsz)\n' "$NATS_URLS" "$(whistle_cluster_ip nats1)"
    printf '  PostgreSQL    primary %s:5432, hot standby %s:5432 (superuser password file %s)\n' "$PG1" "$PG2" "$SECRETS/postgres.pgpass"
    printf '  balancer      gRPC (h2c) %s:50051, console and gRPC-web http://%s:8080/\n' "$LB" "$LB"
    printf '  token         a city operator'"'"'s, in %s; another: DATABASE_URL=%s PGPASSFILE=%s %s token create --role operator --area 150600\n' \
        "$TOKEN_FILE" "$OWNER_URL" "$OWNER_PASSFILE" "$WHISTLE"
    printf '  load          WHISTLE_NATS_URL=%s WHISTLE_NATS_NKEY_FILE=%s %s load --rate 20 --duration 30s\n' \
        "$NATS_URLS" "$SECRETS/admin.nk" "$WHISTLE"
    # shellcheck disable=SC2016  # $(cat …) is for the shell the example is pasted into
    printf '  read          %s --query-url http://%s:50051 --token "$(cat %s)" incident LAST-DIGITS\n' "$WHISTLE" "$LB" "$TOKEN_FILE"
    printf '  logs          %s/logs/\n' "$C"
    printf '  stop          deploy/cluster/down.sh\n'
} >&2
