#!/usr/bin/env bash
# deploy/local/run.sh — run the platform on this machine.
#
# Starts (or reuses) PostgreSQL through env.sh, builds the binaries, creates the deployment's secrets
# ($WHISTLE_HOME/secrets), renders the authenticated nats-server configuration ($WHISTLE_HOME/nats.conf,
# `whistle nats-config`) and starts (or restarts) the private nats-server with it, creates the hardened
# streams as admin (`whistle streams`), provisions the database's roles (`whistle db roles`, as the
# administrator of DATABASE_URL), migrates and seeds the database as its owner role, builds the web
# console (console.sh), starts whistle-dispatch (on the compressed demo policy),
# whistle-query (the console at /, gRPC, gRPC-web and /metrics on WHISTLE_QUERY_LISTEN, default
# 127.0.0.1:50051) with sign-in links for an operator, a liaison and a grid worker printed for it, and
# `whistle simulate` (grid workers, street staff, department liaisons and follow-ups acting
# together) in the background, and shows what happens (`whistle watch`) in the foreground. Ctrl-C
# stops them; NATS and PostgreSQL keep running with their data (deploy/local/down.sh stops them).
#
# Every NATS connection authenticates (docs/security.md): dispatch and query with their own nkey seeds,
# the auth callout inside whistle-query, the simulation and watch with the admin nkey, people with
# tokens. WHISTLE_NATS_TLS=1 also turns on TLS for NATS clients: a local CA and server certificate are
# made with openssl in $WHISTLE_HOME/tls (clients trust the CA through SSL_CERT_FILE) and the URL becomes
# tls://. PostgreSQL checks passwords too, and each program has its own role (docs/security.md): the admin
# commands here (migrate, seed, token) connect as whistle_owner, dispatch as whistle_dispatch, query as
# whistle_query, each with only its own password file ($WHISTLE_HOME/secrets/<role>.pgpass, through
# PGPASSFILE); DATABASE_URL, the administrator's, is used only to provision the roles.
# With WHISTLE_NATS_URL pointing at a server of your own, nothing is rendered or started: give
# WHISTLE_SECRETS, the secrets directory that server's configuration was rendered from (`whistle
# nats-config --secrets DIR …`), and, for TLS, SSL_CERT_FILE naming its CA.
#
# Settings (environment): WHISTLE_DEMO_RATE (reports per second, default 3), WHISTLE_POLICY (default
# ordos-demo), WHISTLE_NO_FEED=1 (no simulation), WHISTLE_STREAMS_ARGS (e.g. '--event-max-gib 2
# --photo-max-gib 1': smaller stream bounds where the disk is small), WHISTLE_SKIP_BUILD=1 (use the
# binaries and the console as they are), WHISTLE_CONSOLE_DIR (a built console to serve), WHISTLE_NATS_TLS=1,
# WHISTLE_SECRETS (with WHISTLE_NATS_URL), the binaries' paths below, and env.sh's.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/paths.sh
source "$HERE/paths.sh"

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

NATS_TLS=${WHISTLE_NATS_TLS:-0}
# NATS comes up after the build: its configuration is rendered by the `whistle` binary.
WHISTLE_ENV_NO_NATS=1
# shellcheck source=SCRIPTDIR/env.sh
source "$HERE/env.sh"
unset WHISTLE_ENV_NO_NATS
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

# local_tls DIR: a local CA and a certificate for 127.0.0.1/localhost signed by it, made once with
# openssl (Debian's package, installed if missing). The CA's key never leaves DIR (mode 0700).
local_tls() {
    local dir=$1
    [[ -s $dir/server.crt && -s $dir/server.key && -s $dir/ca.crt ]] && return 0
    command -v openssl >/dev/null 2>&1 || whistle__apt_install openssl || die "openssl is needed for WHISTLE_NATS_TLS=1"
    (
        umask 077
        mkdir -p -- "$dir"
        openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=Whistle local CA" \
            -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
        openssl req -newkey rsa:3072 -nodes -subj "/CN=localhost" \
            -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
            -days 825 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
        rm -f -- "$dir/server.csr" "$dir/server.ext"
        chmod 644 "$dir/ca.crt" "$dir/server.crt"
    ) || die "making the local TLS certificates in $dir failed"
    log "made a local CA and a NATS server certificate in $dir"
}

# The secrets, the configuration and the server; the credentials every process here connects with.
if [[ -n ${WHISTLE_NATS_URL:-} && $WHISTLE_NATS_URL != "${WHISTLE_PRIVATE_NATS_URL:-}" ]]; then
    [[ -n ${WHISTLE_SECRETS:-} ]] || die "WHISTLE_NATS_URL points at your own server: set WHISTLE_SECRETS to the" \
        "secrets directory its configuration was rendered from (whistle nats-config --secrets DIR …)"
    SECRETS=$WHISTLE_SECRETS
    whistle_nats_up || exit 1
else
    SECRETS=$WHISTLE_HOME/secrets
    nats_config=(--secrets "$SECRETS" --port "${WHISTLE_NATS_PORT:-54222}" --store-dir "$WHISTLE_HOME/nats"
        --output "$WHISTLE_HOME/nats.conf")
    if [[ $NATS_TLS == 1 ]]; then
        local_tls "$WHISTLE_HOME/tls"
        nats_config+=(--tls-cert "$WHISTLE_HOME/tls/server.crt" --tls-key "$WHISTLE_HOME/tls/server.key")
        export SSL_CERT_FILE=$WHISTLE_HOME/tls/ca.crt
    fi
    mkdir -p -- "$WHISTLE_HOME"
    log "rendering the authenticated nats-server configuration: whistle nats-config ${nats_config[*]}"
    "$WHISTLE_BIN" nats-config "${nats_config[@]}"
    whistle_nats_up || exit 1
fi
for seed in admin dispatch query auth-callout auth-issuer; do
    [[ -s $SECRETS/$seed.nk ]] || die "no $seed.nk in $SECRETS"
done
export WHISTLE_NATS_NKEY_FILE=$SECRETS/admin.nk
# WHISTLE_STREAMS_ARGS: smaller byte bounds for a small disk (JetStream reserves every bound).
read -r -a streams_args <<<"${WHISTLE_STREAMS_ARGS:-}"
log "creating or updating the streams as admin: whistle streams ${streams_args[*]}"
"$WHISTLE_BIN" streams "${streams_args[@]}"

# The database's roles, with passwords kept beside the other secrets; `db roles` prints each role's
# URL (no password) and password file.
DB_SECRETS=$WHISTLE_HOME/secrets
ADMIN_DATABASE_URL=$DATABASE_URL
log "provisioning the database roles as the administrator: whistle db roles --secrets $DB_SECRETS"
roles_out=$("$WHISTLE_BIN" db roles --secrets "$DB_SECRETS") ||
    die "whistle db roles failed: DATABASE_URL ($(whistle__mask "$DATABASE_URL")) must be a superuser's"
whistle__roles "$roles_out" ||
    die "whistle db roles printed no owner, dispatch and query URLs: $roles_out"
# From here on the admin commands (migrate, seed, token) run as the owner.
export DATABASE_URL=$OWNER_URL PGPASSFILE=$OWNER_PASSFILE
log "migrating the database as its owner: whistle migrate"
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
# start_service BIN LOG [ARGS…]: runs BIN ARGS in the background with its output appended to LOG, and
# fails with the log's tail if it exits within a second. Sets STARTED_PID.
start_service() {
    local bin=$1 logfile=$2 pid status
    shift 2
    printf '\n=== %s: starting %s %s (DATABASE_URL %s)\n' "$(date -Is)" "$bin" "$*" \
        "$(whistle__mask "$DATABASE_URL")" >>"$logfile"
    "$bin" "$@" </dev/null >>"$logfile" 2>&1 &
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
DATABASE_URL=$DISPATCH_URL PGPASSFILE=$DISPATCH_PASSFILE \
    start_service "$WHISTLE_DISPATCH_BIN" "$DISPATCH_LOG" --nats-nkey-file "$SECRETS/dispatch.nk"
DISPATCH_PID=$STARTED_PID
# The auth callout runs inside whistle-query: it must answer before any token connects. With the
# revoker's seed (rendered configurations have it since people's offboarding; an older external
# server's secrets may not) it cuts a revoked token's connections at once.
callout=(--callout-nkey-file "$SECRETS/auth-callout.nk" --callout-issuer-file "$SECRETS/auth-issuer.nk")
if [[ -s $SECRETS/auth-revoker.nk ]]; then
    callout+=(--callout-revoker-file "$SECRETS/auth-revoker.nk")
else
    log "no auth-revoker.nk in $SECRETS: revoked tokens' NATS connections last until their re-check"
fi
DATABASE_URL=$QUERY_URL PGPASSFILE=$QUERY_PASSFILE \
    start_service "$WHISTLE_QUERY_BIN" "$QUERY_LOG" --nats-nkey-file "$SECRETS/query.nk" "${callout[@]}"
QUERY_PID=$STARTED_PID
# A fresh city operator token for this run (stored hashed; `whistle token list` shows them all).
TOKEN_FILE=$WHISTLE_HOME/operator.token
(umask 077 && "$WHISTLE_BIN" token create --role operator --area 150600 --label "deploy/local/run.sh" >"$TOKEN_FILE")
# Sign-in links for the demo: the console takes the token from the link and forgets the link.
DEMO_DEPARTMENT=150602-urban_management
DEMO_GRID=150602001001001
LIAISON_TOKEN=$("$WHISTLE_BIN" token create --role liaison --department "$DEMO_DEPARTMENT" --label "deploy/local/run.sh")
GRID_TOKEN=$("$WHISTLE_BIN" token create --role grid_worker --area "$DEMO_GRID" --label "deploy/local/run.sh")
# The demo grid's community: its first registered Party member (the seeded registry's
# pm-{community}-0001) and the district leader paired with it (docs/leaders.md: ld-150602-01 takes
# the district's first community).
DEMO_COMMUNITY=${DEMO_GRID:0:12}
DEMO_MEMBER=pm-$DEMO_COMMUNITY-0001
DEMO_LEADER=ld-${DEMO_GRID:0:6}-01
MEMBER_TOKEN=$("$WHISTLE_BIN" token create --role member --area "$DEMO_COMMUNITY" --person "$DEMO_MEMBER" --label "deploy/local/run.sh")
LEADER_TOKEN=$("$WHISTLE_BIN" token create --role leader --area "${DEMO_GRID:0:6}" --person "$DEMO_LEADER" --label "deploy/local/run.sh")
# Kept beside the operator's for tools that act as them (deploy/local/screenshots.sh, which waits
# for grid.token: written last).
(umask 077 && printf '%s\n' "$LIAISON_TOKEN" >"$WHISTLE_HOME/liaison.token" &&
    printf '%s\n' "$MEMBER_TOKEN" >"$WHISTLE_HOME/member.token" &&
    printf '%s\n' "$LEADER_TOKEN" >"$WHISTLE_HOME/leader.token" &&
    printf '%s\n' "$GRID_TOKEN" >"$WHISTLE_HOME/grid.token")
CONSOLE_URL=http://$WHISTLE_QUERY_LISTEN
# What a raw NATS client needs to act as the demo grid worker: the token, and the private inbox of its
# person (gw-{grid}, the default person of a grid worker token).
GRID_INBOX=_INBOX_gw-$DEMO_GRID
GRID_SUBJECT=whistle.report.${DEMO_GRID:0:6}.${DEMO_GRID:0:9}.${DEMO_GRID:0:12}.$DEMO_GRID
nats_tls_flag=""
[[ $WHISTLE_NATS_URL == tls://* && -n ${SSL_CERT_FILE:-} ]] && nats_tls_flag=" --tlsca $SSL_CERT_FILE"

if [[ $NO_FEED == 1 ]]; then
    feed_line="off (WHISTLE_NO_FEED=1)"
else
    printf '\n=== %s: starting %s simulate --rate %s\n' "$(date -Is)" "$WHISTLE_BIN" "$DEMO_RATE" >>"$FEED_LOG"
    "$WHISTLE_BIN" simulate --rate "$DEMO_RATE" </dev/null >>"$FEED_LOG" 2>&1 &
    FEED_PID=$!
    feed_line="whistle simulate: $DEMO_RATE reports/s with liaisons, street staff and follow-ups, pid $FEED_PID, log $FEED_LOG"
fi

watch_env=("WHISTLE_NATS_URL=$WHISTLE_NATS_URL" "WHISTLE_NATS_NKEY_FILE=$WHISTLE_NATS_NKEY_FILE")
[[ -n ${SSL_CERT_FILE:-} ]] && watch_env+=("SSL_CERT_FILE=$SSL_CERT_FILE")
watch_cmd=$(printf '%q ' "${watch_env[@]}" "$WHISTLE_BIN" watch)
{
    printf 'whistle: the platform runs\n'
    printf '  NATS          %s (authenticated; secrets in %s)\n' "$WHISTLE_NATS_URL" "$SECRETS"
    printf '  PostgreSQL    %s (admin commands; passwords in %s/<role>.pgpass)\n' "$OWNER_URL" "$DB_SECRETS"
    printf '                %s (dispatch), %s (query)\n' "$DISPATCH_URL" "$QUERY_URL"
    printf '                %s (administrator: whistle db roles)\n' "$(whistle__mask "$ADMIN_DATABASE_URL")"
    printf '  policy        %s\n' "$WHISTLE_POLICY"
    printf '  dispatch      pid %s, log %s\n' "$DISPATCH_PID" "$DISPATCH_LOG"
    printf '  query         gRPC + gRPC-web on %s, metrics http://%s/metrics, pid %s, log %s\n' \
        "$WHISTLE_QUERY_LISTEN" "$WHISTLE_QUERY_LISTEN" "$QUERY_PID" "$QUERY_LOG"
    printf '  console       %s/  (sign in with a token, or open a link below)\n' "$CONSOLE_URL"
    printf '    指挥大屏    %s/#/screen?token=%s  (city operator)\n' "$CONSOLE_URL" "$(cat -- "$TOKEN_FILE")"
    printf '    部门工作台  %s/#/workbench?token=%s  (liaison of %s)\n' "$CONSOLE_URL" "$LIAISON_TOKEN" "$DEMO_DEPARTMENT"
    printf '    网格上报    %s/#/report?token=%s  (grid worker of %s)\n' "$CONSOLE_URL" "$GRID_TOKEN" "$DEMO_GRID"
    printf '    党员接单    %s/#/offers?token=%s  (Party member %s of %s)\n' "$CONSOLE_URL" "$MEMBER_TOKEN" "$DEMO_MEMBER" "$DEMO_COMMUNITY"
    printf '    领导结对    %s/#/paired?token=%s  (leader %s)\n' "$CONSOLE_URL" "$LEADER_TOKEN" "$DEMO_LEADER"
    printf '  token         city operator, in %s: %s\n' "$TOKEN_FILE" "$(cat -- "$TOKEN_FILE")"
    # shellcheck disable=SC2016  # $(cat …) is for the shell the example is pasted into
    printf '  try           grpcurl -plaintext -H "authorization: Bearer $(cat %s)" %s whistle.v1.CommandCenter/GetOverview\n' \
        "$TOKEN_FILE" "$WHISTLE_QUERY_LISTEN"
    printf '  grid worker   NATS token %s, inbox prefix %s (may publish only %s)\n' \
        "$GRID_TOKEN" "$GRID_INBOX" "$GRID_SUBJECT"
    # shellcheck disable=SC2016  # $(date …) is for the shell the example is pasted into
    printf '  raw NATS      nats --server %s%s --user %s --inbox-prefix %s pub -H Content-Type:application/json %s "{\\"report_id\\":\\"raw-$(date +%%s)\\",\\"reporter_id\\":\\"gw-%s\\",\\"grid_code\\":\\"%s\\",\\"category\\":\\"sanitation.garbage\\",\\"title\\":\\"垃圾满溢\\",\\"reported_at\\":\\"$(date -u +%%FT%%TZ)\\"}"\n' \
        "$WHISTLE_NATS_URL" "$nats_tls_flag" "$GRID_TOKEN" "$GRID_INBOX" "$GRID_SUBJECT" "$DEMO_GRID" "$DEMO_GRID"
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
