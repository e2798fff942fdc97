#!/usr/bin/env bash
# Backs up a Whistle deployment while it runs: the JetStream streams first (`whistle
# backup-streams`, as the admin), then a base backup of PostgreSQL (`pg_basebackup`, checked with
# `pg_verifybackup`). docs/operations.md, "Backups", says how often, what it costs and how to
# restore (deploy/backup/restore.sh); deploy/backup/drill.sh rehearses the whole cycle.
#
#   deploy/backup/backup.sh /var/backups/whistle     # prints the new backup's directory
#
# Environment:
#   WHISTLE_NATS_URL, WHISTLE_NATS_NKEY_FILE  the NATS server and the admin's seed
#   WHISTLE_BACKUP_PG_URL   a superuser's (or a REPLICATION role's) URL of the database; default
#                           DATABASE_URL. Its password comes from PGPASSFILE or ~/.pgpass.
#   WHISTLE_BIN             the whistle binary (default: whistle on PATH)
#   PG_BINDIR               where pg_basebackup and pg_verifybackup are (default: PATH)
#
# The order matters: a database newer than the streams' consumer state is safe (intake records a
# redelivered report once), a database older than it would lose the reports acknowledged between
# the two. A backup is written under a hidden name and renamed when complete, so a directory
# without the leading dot is always a whole, verified backup.
set -euo pipefail

root=${1:?usage: backup.sh BACKUP_ROOT}
whistle=${WHISTLE_BIN:-whistle}
pg_url=${WHISTLE_BACKUP_PG_URL:-${DATABASE_URL:?set WHISTLE_BACKUP_PG_URL or DATABASE_URL}}
pg() { if [[ -n ${PG_BINDIR:-} ]]; then "$PG_BINDIR/$1" "${@:2}"; else "$@"; fi; }

umask 077
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p -- "$root"
partial="$root/.$stamp.partial"
mkdir -- "$partial"
trap 'rm -rf -- "$partial"' ERR

started=$(date +%s)
"$whistle" backup-streams --to "$partial/streams" >"$partial/streams.txt"
streams_done=$(date +%s)
pg pg_basebackup --dbname "$pg_url" --pgdata "$partial/pg" --format=plain --wal-method=stream \
    --checkpoint=fast --label "whistle $stamp" --manifest-checksums=SHA256
pg pg_verifybackup --quiet "$partial/pg"
finished=$(date +%s)

cat >"$partial/BACKUP" <<INFO
whistle backup $stamp
streams: $(tr '\n' ';' <"$partial/streams.txt")
streams taken in $((streams_done - started)) s, database in $((finished - streams_done)) s
restore: deploy/backup/restore.sh postgres $root/$stamp NEW_DATA_DIR [--wal WAL_ARCHIVE [--until TIME]]
         deploy/backup/restore.sh streams $root/$stamp   (on a new nats-server, before whistle streams)
INFO
rm -f -- "$partial/streams.txt"
mv -- "$partial" "$root/$stamp"
trap - ERR
echo "$root/$stamp"
