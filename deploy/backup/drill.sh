#!/usr/bin/env bash
# The restore drill, long form: the integration suite's drill
# (restore::a_backup_restores_into_fresh_servers_with_nothing_lost_or_fired_twice) with
# WHISTLE_DRILL_REPORTS reports (default 1500), on private servers of its own; it prints the
# backup's and the restore's times that docs/operations.md quotes as the recovery time.
#
#   deploy/backup/drill.sh            # from the repository root or anywhere in it
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.."
# The private PostgreSQL and nats-server binary of the local stack (the drill makes its own
# cluster from the same PostgreSQL installation).
# shellcheck source=SCRIPTDIR/../local/env.sh
source deploy/local/env.sh
export WHISTLE_DRILL_REPORTS=${WHISTLE_DRILL_REPORTS:-1500}
cargo test -p whistle-integration-tests --test it -- \
    restore::a_backup_restores_into_fresh_servers_with_nothing_lost_or_fired_twice \
    --exact --nocapture --test-threads 1
