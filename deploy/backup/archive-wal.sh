#!/usr/bin/env bash
# PostgreSQL's archive_command for point-in-time recovery: copies one finished WAL segment into
# the archive directory, durably, and never over a different file (PostgreSQL retries a failed
# archive, so an identical copy already there is success). In postgresql.conf:
#
#   wal_level = replica
#   archive_mode = on
#   archive_command = '/opt/whistle/deploy/backup/archive-wal.sh %p %f /var/backups/whistle/wal'
#   archive_timeout = 60          # the recovery point objective: at most a minute of WAL unarchived
set -euo pipefail

source_path=${1:?usage: archive-wal.sh %p %f ARCHIVE_DIR}
name=${2:?usage: archive-wal.sh %p %f ARCHIVE_DIR}
dir=${3:?usage: archive-wal.sh %p %f ARCHIVE_DIR}

if [[ -e $dir/$name ]]; then
    if cmp -s -- "$source_path" "$dir/$name"; then
        exit 0
    fi
    echo "archive-wal.sh: $dir/$name exists and differs; refusing to overwrite it" >&2
    exit 1
fi
temporary="$dir/.$name.$$"
cp -- "$source_path" "$temporary"
sync -- "$temporary"
mv -- "$temporary" "$dir/$name"
sync -- "$dir"
