#!/bin/bash
# deploy/compose/pg-primary-init.sh — run once by the postgres image's entrypoint when it creates
# the primary's cluster (/docker-entrypoint-initdb.d): the replication role with its password from
# a compose secret, the standby's physical replication slot, replication allowed only over TLS
# with that role's password (deploy/cluster/up.sh does the same), and every other TCP connection
# only over TLS too (the image's last line, `host all all all scram-sha-256`, becomes hostssl).
set -euo pipefail
password=$(<"$WHISTLE_REPLICATOR_PASSWORD_FILE")
# On stdin, not the command line: no other process sees the password.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
SET password_encryption = 'scram-sha-256';
CREATE ROLE whistle_replicator WITH REPLICATION LOGIN PASSWORD '$password';
SELECT pg_create_physical_replication_slot('whistle_standby');
SQL
printf '# Whistle (deploy/compose): the standby streams over TLS only\nhostssl replication whistle_replicator all scram-sha-256\n' \
    >>"$PGDATA/pg_hba.conf"
sed -i 's/^host all all all scram-sha-256$/hostssl all all all scram-sha-256/' "$PGDATA/pg_hba.conf"
