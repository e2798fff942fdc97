#!/usr/bin/env bash
# deploy/local/bench-trigger.sh — what the timeline's photo trigger (`timeline_photo_refs`, migration
# 25) costs PostgreSQL, in instructions counted by valgrind's callgrind, so the figure does not
# depend on what else the machine runs:
#   - intake's shape: timeline rows without photos (the trigger's WHEN clause is checked, the
#     trigger never fires), with the trigger present and dropped;
#   - a resolution's shape: rows whose data carries three "after" photos (the trigger writes three
#     photo_refs rows), with the trigger present and dropped.
#
#   deploy/local/bench-trigger.sh [--rows N]
#
# It initialises a throwaway PostgreSQL cluster in a temporary directory (the newest server under
# /usr/lib/postgresql, or $WHISTLE_PG_BINDIR), applies crates/store/migrations, adds
# 100,000 incidents, stops it, then runs each case in `postgres --single` under callgrind: the same
# transaction with 0 and with N rows (default 20,000; a tenth of that for photo rows), rolled back.
# The difference divided by the rows is the instructions a row. Needs valgrind (Debian's package).
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/paths.sh
source "$HERE/paths.sh"

rows=20000
while (($#)); do
    case $1 in
        --rows) rows=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-trigger: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null 2>&1 || { echo "bench-trigger: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
pgbin=${WHISTLE_PG_BINDIR:-$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
[[ -x $pgbin/initdb ]] || { echo "bench-trigger: no PostgreSQL server binaries in $pgbin (set WHISTLE_PG_BINDIR)" >&2; exit 1; }

# PostgreSQL refuses to run as root.
as_pg() { if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
dir=$(mktemp -d)
trap 'as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf -- "$dir"' EXIT
chmod 755 "$dir"
[[ $EUID -ne 0 ]] || chown postgres: "$dir"
as_pg "$pgbin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
as_pg "$pgbin/pg_ctl" -D "$dir/data" -o "-c listen_addresses='' -k $dir" -l "$dir/log" -w start >/dev/null
sql() { psql -h "$dir" -U postgres -d bench -qAtX -v ON_ERROR_STOP=1 "$@"; }
psql -h "$dir" -U postgres -d postgres -qAtX -c "CREATE DATABASE bench"
for migration in "$REPO"/crates/store/migrations/*.sql; do sql -f "$migration" >/dev/null; done
sql <<'SQL'
INSERT INTO incidents (id, status, level, category, urgency, title, description, district_code,
                       street_code, community_code, grid_code, reporter_id, policy_version,
                       reported_at, created_at, updated_at)
SELECT gen_random_uuid(), 'open', 'grid', 'sanitation', 'normal', 't', 'd', '150602', '150602001',
       '150602001001', '150602001001001', 'gw-0001', 'v1', now(), now(), now()
FROM generate_series(1, 100000);
CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id FROM incidents;
CREATE UNIQUE INDEX ON bench_ids (n);
CREATE SEQUENCE bench_seq;
VACUUM ANALYZE;
SQL
as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null

# The instructions `postgres --single` executes for one transaction: $1 the trigger (present or
# dropped), $2 the timeline entry's kind, $3 its data as an SQL expression of n, $4 how many rows.
instructions() {
    local setup="SELECT 1;" script=$dir/case.sql
    [[ $1 == dropped ]] && setup="DROP TRIGGER timeline_photo_refs ON timeline;"
    printf 'BEGIN;\n%s\n%s\nROLLBACK;\n' "$setup" \
        "INSERT INTO timeline (incident_id, seq, kind, actor_id, at, data) SELECT id, nextval('bench_seq'), '$2', 'gw-0001', now(), $3 FROM bench_ids WHERE n <= $4;" \
        >"$script"
    chmod 644 "$script"
    as_pg valgrind --tool=callgrind --callgrind-out-file=/dev/null "$pgbin/postgres" --single -D "$dir/data" bench \
        <"$script" 2>&1 | awk '/Collected :/ { print $4 }'
}

intake_data="'{\"report_id\": \"r-000000000001\", \"lat\": 39.6, \"lon\": 109.8}'::jsonb"
photo_data="('{\"photos\": [\"sha256-a' || n || '\", \"sha256-b\", \"sha256-c\"]}')::jsonb"
# Fields separated by tabs: the SQL holds '|'.
for case in "intake rows (no photos)	report.attached	$intake_data	$rows" \
    "resolution rows (3 photos)	incident.resolved	$photo_data	$((rows / 10))"; do
    IFS=$'\t' read -r name kind data n <<<"$case"
    for trigger in present dropped; do
        empty=$(instructions "$trigger" "$kind" "$data" 0)
        full=$(instructions "$trigger" "$kind" "$data" "$n")
        echo "$name, trigger $trigger: $(((full - empty) / n)) instructions a row ($n rows)"
    done
done
