#!/usr/bin/env bash
# deploy/image/smoke.sh — start Whistle from an image filesystem (deploy/image/assemble.sh's tree)
# as the image's non-root user, check it answers, and stop everything.
#
#   deploy/image/smoke.sh [--root DIR] [--listen HOST:PORT]
#
#   --root    the tree (default $CARGO_TARGET_DIR/image/rootfs)
#   --listen  where whistle-query listens (default 127.0.0.1:50151)
#
# NATS and PostgreSQL are started as deploy/local starts them (deploy/local/env.sh: nats-server
# >= 2.10, a private PostgreSQL with passwords, on WHISTLE_NATS_PORT and WHISTLE_PG_PORT), private
# to $WHISTLE_HOME/image-smoke, made anew each run and stopped and deleted at the end (the logs
# stay in its logs/). Everything Whistle runs comes from the tree
# and runs as uid:gid 10001:10001, the image's USER, through setpriv: `whistle nats-config` makes
# the secrets, `whistle streams`, `db roles`, `migrate` and `seed` set up NATS and the database,
# then whistle-dispatch and whistle-query start with the image's environment (WHISTLE_CONSOLE_DIR,
# the query listener) and each its own credentials, with the root filesystem read-only as the
# manifests run them (a mount namespace of their own). Checked: query's grpc.health.v1 answers
# SERVING over gRPC (the check Kubernetes' gRPC probe makes), `/` serves the console's page,
# `/metrics` answers, and both services run as 10001. The binaries use this machine's glibc, not the
# runtime image's (both are Debian 12's); nothing is chrooted.
# Exits non-zero on the first failed check, with the services' logs.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/../local/paths.sh
source "$HERE/../local/paths.sh"

root="" listen=127.0.0.1:50151
while (($#)); do
    case $1 in
        --root) root=$2; shift ;;
        --listen) listen=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "smoke: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
root=${root:-$TARGET_DIR/image/rootfs}
IMAGE_UID=10001
log() { printf 'smoke: %s\n' "$*" >&2; }
die() { printf 'smoke: error: %s\n' "$*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root: it starts the programs as uid $IMAGE_UID"
for tool in setpriv unshare; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool (util-linux) is needed"
done
command -v curl >/dev/null 2>&1 || die "curl is needed"
BIN=$root/usr/local/bin
for bin in whistle whistle-dispatch whistle-query; do
    [[ -x $BIN/$bin ]] || die "no $BIN/$bin: run deploy/image/assemble.sh first"
done
# "${AS_IMAGE[@]}" CMD…: CMD as the image's user, with only the environment given (the image's
# own). An array, not a function, so that a service started in the background is the process
# whose pid $! gives (setpriv and env exec it).
AS_IMAGE=(setpriv --reuid="$IMAGE_UID" --regid="$IMAGE_UID" --clear-groups --
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8)
as_image() { "${AS_IMAGE[@]}" "$@"; }
# The services run as the manifests run them: the root filesystem read-only (Kubernetes'
# readOnlyRootFilesystem, compose's read_only), in a mount namespace of their own, so a write
# anywhere but their inherited file descriptors fails.
# shellcheck disable=SC2016  # $@ is the inner shell's
READ_ONLY=(unshare --mount --propagation private -- sh -c 'mount -o remount,bind,ro / && exec "$@"' read-only)
as_image test -x "$BIN/whistle-query" ||
    die "uid $IMAGE_UID cannot reach $BIN (a parent directory closed to others?): give --root a tree elsewhere"

started=$(date +%s)
# The servers, private to this check.
export WHISTLE_HOME=${WHISTLE_HOME:-$REPO/.whistle}/image-smoke
mkdir -p -- "$WHISTLE_HOME/logs"
unset WHISTLE_NATS_URL DATABASE_URL PGPASSFILE WHISTLE_PRIVATE_NATS_URL WHISTLE_PRIVATE_DATABASE_URL
WHISTLE_ENV_NO_START=1
# shellcheck source=SCRIPTDIR/../local/env.sh
source "$REPO/deploy/local/env.sh"
# The servers' data is this check's alone and made anew each run: the secrets, JetStream's key
# among them, are (below), and a store sealed with another key does not open.
purge_servers() {
    whistle_stop_private >/dev/null 2>&1 || true
    whistle__pg_paths
    rm -rf -- "$WHISTLE_HOME/nats" "$WHISTLE_HOME/nats.conf" "$WHISTLE_HOME/secrets" "$WHISTLE__PG_DATA"
}
purge_servers
# As whistle_env_up, without its report fonts: the nats-server binary and PostgreSQL, under the lock.
whistle__lock || die "cannot take $WHISTLE_HOME/.lock"
whistle_ensure_nats_bin || die "no nats-server"
whistle_ensure_pg || die "PostgreSQL did not start"
whistle__unlock
ADMIN_URL=$DATABASE_URL

# What the image's user owns: the secrets and its run directory (mode 0700), as a Kubernetes
# Secret volume or a compose secret would give them.
RUN=$(mktemp -d /tmp/whistle-image-smoke.XXXXXX)
chown "$IMAGE_UID:$IMAGE_UID" "$RUN"
chmod 700 "$RUN"
DISPATCH_PID="" QUERY_PID=""
# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
    local status=$? pid i
    trap - EXIT
    for pid in $QUERY_PID $DISPATCH_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $QUERY_PID $DISPATCH_PID; do
        for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((status != 0)); then
        whistle__tail "$RUN/dispatch.log" 30
        whistle__tail "$RUN/query.log" 30
        cp -f -- "$RUN/dispatch.log" "$RUN/query.log" "$WHISTLE_HOME/logs/" 2>/dev/null || true
    fi
    purge_servers
    rm -rf -- "$RUN"
    if ((status == 0)); then
        log "passed in $(($(date +%s) - started)) s; everything stopped and its data deleted"
    else
        log "FAILED (status $status); logs kept in $WHISTLE_HOME/logs; everything stopped and its data deleted"
    fi
    exit "$status"
}
trap cleanup EXIT

NATS_PORT=${WHISTLE_NATS_PORT:-54222}
SECRETS=$RUN/secrets
log "rendering the NATS configuration as uid $IMAGE_UID: whistle nats-config"
as_image "$BIN/whistle" nats-config --secrets "$SECRETS" --port "$NATS_PORT" \
    --store-dir "$WHISTLE_HOME/nats" --output "$RUN/nats.conf"
# nats-server (not part of the image) reads it where deploy/local keeps it.
install -m 0600 -- "$RUN/nats.conf" "$WHISTLE_HOME/nats.conf"
whistle_nats_up || die "nats-server did not start"
NATS_URL=$WHISTLE_NATS_URL
install -o "$IMAGE_UID" -g "$IMAGE_UID" -m 0600 -- "$PGPASSFILE" "$RUN/postgres.pgpass"

whistle_cli() { as_image WHISTLE_NATS_URL="$NATS_URL" "$@"; }
log "streams, database roles, migrations and the Ordos seed, from the tree as uid $IMAGE_UID"
# Small bounds, as deploy/cluster/up.sh's: each stream reserves its bound on the disk, and the
# defaults' 29 GiB need about 40 GB free (docs/operations.md, "Where data lives").
whistle_cli WHISTLE_NATS_NKEY_FILE="$SECRETS/admin.nk" "$BIN/whistle" streams --report-max-gib 1 \
    --event-max-gib 1 --rejected-max-gib 1 --photo-max-gib 1 >/dev/null
roles_out=$(as_image DATABASE_URL="$ADMIN_URL" PGPASSFILE="$RUN/postgres.pgpass" \
    "$BIN/whistle" db roles --secrets "$SECRETS/db")
whistle__roles "$roles_out" || die "whistle db roles printed: $roles_out"
as_image DATABASE_URL="$OWNER_URL" PGPASSFILE="$OWNER_PASSFILE" "$BIN/whistle" migrate >/dev/null
as_image DATABASE_URL="$OWNER_URL" PGPASSFILE="$OWNER_PASSFILE" "$BIN/whistle" seed >/dev/null
as_image "$BIN/whistle" contacts keygen smoke-1 >"$RUN/contact-keys"
chown "$IMAGE_UID:$IMAGE_UID" "$RUN/contact-keys"
chmod 600 "$RUN/contact-keys"

# The image's environment (Containerfile ENV), the listener moved to a free local port.
image_env=(WHISTLE_CONSOLE_DIR="$root/usr/share/whistle/console" WHISTLE_QUERY_LISTEN="$listen")
log "starting whistle-dispatch and whistle-query from $BIN as uid $IMAGE_UID, the root filesystem read-only"
"${READ_ONLY[@]}" "${AS_IMAGE[@]}" "${image_env[@]}" WHISTLE_NATS_URL="$NATS_URL" DATABASE_URL="$DISPATCH_URL" \
    PGPASSFILE="$DISPATCH_PASSFILE" WHISTLE_DISPATCH_NKEY_FILE="$SECRETS/dispatch.nk" \
    WHISTLE_CONTACT_KEYS="$RUN/contact-keys" "$BIN/whistle-dispatch" >"$RUN/dispatch.log" 2>&1 &
DISPATCH_PID=$!
"${READ_ONLY[@]}" "${AS_IMAGE[@]}" "${image_env[@]}" WHISTLE_NATS_URL="$NATS_URL" DATABASE_URL="$QUERY_URL" \
    PGPASSFILE="$QUERY_PASSFILE" WHISTLE_QUERY_NKEY_FILE="$SECRETS/query.nk" \
    WHISTLE_CALLOUT_NKEY_FILE="$SECRETS/auth-callout.nk" WHISTLE_CALLOUT_ISSUER_FILE="$SECRETS/auth-issuer.nk" \
    WHISTLE_CALLOUT_REVOKER_FILE="$SECRETS/auth-revoker.nk" WHISTLE_CONTACT_KEYS="$RUN/contact-keys" \
    "$BIN/whistle-query" >"$RUN/query.log" 2>&1 &
QUERY_PID=$!

# grpc.health.v1.Health/Check for the server as a whole (service ""), over HTTP/2 without TLS as
# the kubelet's gRPC probe sends it: a zero-length request frame; the answer SERVING is the frame
# 00 00000002 0801 (field 1 = 1).
health() {
    printf '\0\0\0\0\0' | curl -sS --max-time 5 --http2-prior-knowledge -H 'content-type: application/grpc' \
        -H 'te: trailers' --data-binary @- "http://$listen/grpc.health.v1.Health/Check" 2>/dev/null | od -An -tx1 | tr -d ' \n'
}
deadline=$(($(date +%s) + 90))
until [[ $(health) == 00000000020801 ]]; do
    kill -0 "$QUERY_PID" 2>/dev/null || die "whistle-query exited"
    kill -0 "$DISPATCH_PID" 2>/dev/null || die "whistle-dispatch exited"
    (($(date +%s) < deadline)) || die "grpc.health.v1 did not answer SERVING on $listen within 90 s"
    sleep 0.5
done
log "ok: grpc.health.v1.Health/Check on $listen answers SERVING"

page=$(curl -sS --max-time 5 -w '\n%{http_code} %{content_type}' "http://$listen/")
status=${page##*$'\n'}
[[ $status == "200 text/html"* ]] || die "GET / answered '$status'"
expected=$(grep -o '<title>[^<]*</title>' "$root/usr/share/whistle/console/index.html" | head -n 1)
[[ -n $expected && $page == *"$expected"* ]] || die "GET / is not the tree's console page (no $expected)"
log "ok: GET / serves the console's page from the tree ($status, $expected)"

metrics=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://$listen/metrics")
[[ $metrics == 200 ]] || die "GET /metrics answered $metrics"
log "ok: GET /metrics answers 200"

kill -0 "$DISPATCH_PID" 2>/dev/null || die "whistle-dispatch exited"
for pid in "$DISPATCH_PID" "$QUERY_PID"; do
    [[ $(awk '$2 == "/" {print $4}' "/proc/$pid/mounts" | cut -d, -f1) == ro ]] ||
        die "pid $pid does not see / read-only"
    ids=$(awk '/^Uid:/ {u = $2 " " $3 " " $4 " " $5} /^Gid:/ {g = $2 " " $3 " " $4 " " $5} END {print u "/" g}' "/proc/$pid/status")
    [[ $ids == "$IMAGE_UID $IMAGE_UID $IMAGE_UID $IMAGE_UID/$IMAGE_UID $IMAGE_UID $IMAGE_UID $IMAGE_UID" ]] ||
        die "pid $pid runs as uid/gid $ids, not $IMAGE_UID"
done
log "ok: whistle-dispatch (pid $DISPATCH_PID) and whistle-query (pid $QUERY_PID) run as uid and gid $IMAGE_UID (real, effective, saved, fs), / read-only"

# SIGTERM, as Kubernetes and compose stop a container: each drains and exits 0 within its grace
# period (dispatch's manifests give 60 s, query's 30 s).
stop_started=$(date +%s%N)
kill -TERM "$QUERY_PID" "$DISPATCH_PID"
query_status=0 dispatch_status=0
wait "$QUERY_PID" || query_status=$?
wait "$DISPATCH_PID" || dispatch_status=$?
QUERY_PID="" DISPATCH_PID=""
((query_status == 0)) || die "whistle-query exited $query_status on SIGTERM"
((dispatch_status == 0)) || die "whistle-dispatch exited $dispatch_status on SIGTERM"
log "ok: SIGTERM stopped both with status 0 in $((($(date +%s%N) - stop_started) / 1000000)) ms"
