#!/usr/bin/env bash
# deploy/cluster/failover.sh — make the hot standby the primary of the one-machine cluster
# (docs/operations.md, "Failing the primary over"), the documented manual procedure as one command:
#
#   deploy/cluster/failover.sh [--stop-primary]
#
#   --stop-primary  first stop the primary at once (pg_ctl stop -m immediate: what its machine's
#                   loss looks like to the others), for a drill; without it the primary must
#                   already be gone, and the script refuses while it still answers (two primaries
#                   would each take writes)
#
# Then: promotes wh-pg2 (pg_ctl promote) and waits until it takes writes; stops the dispatch and
# query replicas (SIGTERM, SIGKILL after 3 s: nothing uncommitted was acked, so the reports wait
# in WHISTLE_REPORTS);
# starts them again on the new primary with every read there (there is no standby left); and
# prints how long each step took. The old primary is not rejoined: make it a standby of the new
# one with pg_rewind or a fresh pg_basebackup before using it again. Run as root, after up.sh.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/../local/paths.sh
source "$HERE/../local/paths.sh"

stop_primary=0
while (($#)); do
    case $1 in
        --stop-primary) stop_primary=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "failover: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

WHISTLE_ENV_NO_START=1
# shellcheck source=SCRIPTDIR/../local/env.sh
source "$REPO/deploy/local/env.sh"
# shellcheck source=SCRIPTDIR/topology.sh
source "$HERE/topology.sh"
# shellcheck source=SCRIPTDIR/services.sh
source "$HERE/services.sh"

log() { printf 'failover: %s\n' "$*" >&2; }
die() {
    printf 'failover: error: %s\n' "$*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || die "run as root (the cluster's namespaces)"
C=$WHISTLE_CLUSTER_HOME
[[ -s $C/run/up.env ]] || die "no cluster of deploy/cluster/up.sh in $C"
BIN="" PGBIN="" PGUSER_OS="" CONSOLE_DIR=""
# shellcheck disable=SC1091  # written by up.sh
source "$C/run/up.env"
SECRETS=$C/secrets
PGDIR=$C/pg
PG1=$(whistle_cluster_ip pg1) PG2=$(whistle_cluster_ip pg2)
NATS_URLS=""
for n in 1 2 3; do NATS_URLS+="${NATS_URLS:+,}nats://$(whistle_cluster_ip "nats$n"):4222"; done
CONTACT_KEYS=$SECRETS/contact-keys
export PGPASSFILE=$SECRETS/postgres.pgpass WHISTLE_POLICY=${WHISTLE_POLICY:-ordos}
as_pg() { local node=$1; shift; in_ns "$node" runuser -u "$PGUSER_OS" -- "$@"; }
answers() { psql -X -q -h "$1" -U postgres -d whistle -tAc "$2" 2>/dev/null; }
ms() { date +%s%3N; }

t0=$(ms)
if ((stop_primary)); then
    as_pg pg1 "$PGBIN/pg_ctl" -D "$PGDIR/pg1" -m immediate -w -t 30 stop >/dev/null ||
        die "stopping the primary failed"
    log "primary $PG1 stopped (immediate)"
fi
[[ -z $(answers "$PG1" 'SELECT 1') ]] ||
    die "the primary $PG1 still answers: stop it (or run with --stop-primary) so that there is never two"
[[ $(answers "$PG2" 'SELECT pg_is_in_recovery()') == t ]] ||
    die "$PG2 is not a standby in recovery (already promoted?)"
lag=$(answers "$PG2" "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())")
log "standby $PG2: received WAL not yet replayed ${lag:-?} bytes (replayed before promotion)"

as_pg pg2 "$PGBIN/pg_ctl" -D "$PGDIR/pg2" -w -t 60 promote >/dev/null || die "promoting $PG2 failed"
until [[ $(answers "$PG2" 'SELECT pg_is_in_recovery()') == f ]]; do sleep 0.1; done
t_promoted=$(ms)
log "promoted $PG2: it takes writes ($((t_promoted - t0)) ms)"

# A graceful stop waits on the lost primary (dispatch's batch in hand, its lease's release): give
# it 3 s, then kill. Nothing is lost either way: what was not committed was not acked.
for name in dispatch1 dispatch2 query1 query2; do stop_daemon "$name" 3 & done
wait
t_stopped=$(ms)
log "dispatch and query replicas stopped ($((t_stopped - t_promoted)) ms)"

export DATABASE_URL=postgres://postgres@$PG2:5432/whistle
roles_out=$("$BIN/whistle" db roles --secrets "$SECRETS")
whistle__roles "$roles_out" || die "whistle db roles printed: $roles_out"
start_services ""
t_started=$(ms)
log "dispatch and query replicas running on $PG2 ($((t_started - t_stopped)) ms)"
printf 'pg2\n' >"$C/run/primary"
log "done in $((t_started - t0)) ms: primary $PG2, no standby (rejoin $PG1 with pg_rewind or pg_basebackup)"
