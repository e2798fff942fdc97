#!/usr/bin/env bash
# Restores a backup of deploy/backup/backup.sh onto fresh servers (docs/operations.md, "Backups").
#
#   deploy/backup/restore.sh postgres BACKUP NEW_DATA_DIR [--wal ARCHIVE_DIR [--until TIME]]
#       makes a PostgreSQL data directory from the base backup. With --wal it then replays the
#       archived WAL (archive-wal.sh's directory): to its end, or up to TIME
#       ('2026-12-06 08:00:00+08') for point-in-time recovery. Start it with your service
#       manager or `pg_ctl -D NEW_DATA_DIR -o '-p PORT' start` (as the postgres user); it comes
#       up with the same roles and passwords (whistle db roles' files still apply).
#
#   deploy/backup/restore.sh streams BACKUP
#       restores the JetStream streams — messages and consumers — onto the nats-server of
#       WHISTLE_NATS_URL (as the admin: WHISTLE_NATS_NKEY_FILE), which must not have them yet,
#       then runs `whistle streams` to bring their settings up to date.
#
# Then start dispatch (it fires every deadline that passed while the platform was down, once) and
# query against the restored servers.
set -euo pipefail

usage() { sed -n '3,17p' "$0" >&2; exit 2; }
whistle=${WHISTLE_BIN:-whistle}
what=${1:-}
backup=${2:-}
[[ -n $what && -n $backup ]] || usage
[[ -f $backup/BACKUP ]] || { echo "restore.sh: $backup is not a finished backup (no BACKUP file)" >&2; exit 1; }

case $what in
postgres)
    data=${3:-}
    [[ -n $data ]] || usage
    shift 3
    wal='' until=''
    while (($#)); do
        case $1 in
        --wal) wal=${2:?--wal needs a directory}; shift 2 ;;
        --until) until=${2:?--until needs a time}; shift 2 ;;
        *) usage ;;
        esac
    done
    [[ -z $until || -n $wal ]] || { echo "restore.sh: --until needs --wal" >&2; exit 2; }
    if [[ -e $data ]] && [[ -n $(ls -A -- "$data") ]]; then
        echo "restore.sh: $data is not empty" >&2
        exit 1
    fi
    mkdir -p -- "$data"
    chmod 0700 -- "$data"
    cp -a -- "$backup/pg/." "$data/"
    if [[ -n $wal ]]; then
        {
            echo "restore_command = 'cp $wal/%f %p'"
            if [[ -n $until ]]; then
                echo "recovery_target_time = '$until'"
            fi
            echo "recovery_target_action = 'promote'"
        } >>"$data/postgresql.auto.conf"
        touch -- "$data/recovery.signal"
    fi
    if [[ $(id -u) == 0 ]] && id postgres >/dev/null 2>&1; then
        chown -R postgres: -- "$data"
    fi
    echo "restored the database into $data${wal:+, replaying the WAL of $wal${until:+ up to $until}}"
    ;;
streams)
    "$whistle" restore-streams --from "$backup/streams"
    "$whistle" streams
    ;;
*)
    usage
    ;;
esac
