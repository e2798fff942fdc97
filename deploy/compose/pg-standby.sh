#!/bin/bash
# deploy/compose/pg-standby.sh — the hot standby's entrypoint (as the postgres user): on an empty
# volume, a base backup of the primary over TLS, verified against the CA with the primary's name
# (-R writes standby.signal and primary_conninfo, -S streams through the slot whistle_standby),
# then PostgreSQL as a hot standby with TLS on for its own clients.
set -euo pipefail
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    PGPASSFILE=/run/secrets/pg-replicator.pgpass pg_basebackup \
        -d "host=pg1 port=5432 user=whistle_replicator sslmode=verify-full sslrootcert=/run/secrets/pg-ca.crt" \
        -D "$PGDATA" -R -S whistle_standby -X stream -c fast
    # The walreceiver reads the replicator's password from the file primary_conninfo names.
    sed -i "s|^primary_conninfo = '|primary_conninfo = 'passfile=/run/secrets/pg-replicator.pgpass |" \
        "$PGDATA/postgresql.auto.conf"
fi
exec postgres -c ssl=on -c ssl_cert_file=/run/secrets/pg-server.crt -c ssl_key_file=/run/secrets/pg-server.key \
    -c hot_standby=on -c hot_standby_feedback=on -c max_connections=200 -c shared_buffers=256MB
