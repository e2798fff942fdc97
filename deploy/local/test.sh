#!/usr/bin/env bash
# deploy/local/test.sh — run the tests: `deploy/local/test.sh [cargo test arguments]`.
#
# Sources env.sh first, so the tests find DATABASE_URL and PGPASSFILE (the PostgreSQL server, as its
# superuser, in which each test creates its own fresh database with its own roles and passwords) and WHISTLE_NATS_SERVER_BIN (to spawn their own nats-servers), then console.sh,
# which builds the web console (WHISTLE_CONSOLE_DIR) and installs Chromium (CHROMIUM) for the browser tests,
# and installs PyPI's georeport (WHISTLE_GEOREPORT_DIR), the Open311 client the Open311 test drives. Runs
# `cargo test --workspace --locked "$@"` (unit, integration and doc tests); with WHISTLE_USE_NEXTEST=1
# and cargo-nextest installed, `cargo nextest run` instead, plus the doc tests when no arguments are given.
# Exits with the tests' status. On CI (CI=true), or with WHISTLE_STOP_AFTER_TESTS=1, the private servers
# are stopped afterwards. Without arguments it first checks the shipped holiday calendars against
# their two sources (`python3 -m unittest deploy/calendar/test_calendar.py`; the two packages of
# deploy/calendar/requirements.txt are installed with pip when missing).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$HERE/../.." && pwd -P)

# shellcheck source=SCRIPTDIR/env.sh
source "$HERE/env.sh"
# shellcheck source=SCRIPTDIR/console.sh
source "$HERE/console.sh"
whistle_ensure_chromium
cd "$REPO"

# PyPI's georeport, a published Open311 client that it::open311 also drives the Open311 door with.
export WHISTLE_GEOREPORT_DIR=${WHISTLE_GEOREPORT_DIR:-$WHISTLE_HOME/georeport}
if [[ ! -d $WHISTLE_GEOREPORT_DIR/georeport ]]; then
    printf 'whistle: pip install --target %s georeport==0.3.1\n' "$WHISTLE_GEOREPORT_DIR" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$WHISTLE_GEOREPORT_DIR" \
        georeport==0.3.1 >&2 || printf 'whistle: georeport not installed; the Open311 client test will fail\n' >&2
fi

stop_after=${WHISTLE_STOP_AFTER_TESTS:-}
if [[ -z $stop_after ]]; then
    if [[ ${CI:-} == true ]]; then stop_after=1; else stop_after=0; fi
fi
if [[ $stop_after == 1 ]]; then
    trap 'whistle_stop_private || true' EXIT
fi

status=0
# The holiday calendar's cross-check against its two sources (deploy/calendar/requirements.txt).
if [[ $# -eq 0 ]]; then
    if ! python3 -c 'import chinese_calendar, holidays, tomllib' 2>/dev/null; then
        whistle__pip_install -r deploy/calendar/requirements.txt || status=$?
    fi
    printf 'whistle: python3 -m unittest deploy/calendar/test_calendar.py\n' >&2
    python3 -m unittest deploy/calendar/test_calendar.py || status=$?
fi
if [[ ${WHISTLE_USE_NEXTEST:-0} == 1 ]] && cargo nextest --version >/dev/null 2>&1; then
    printf 'whistle: cargo nextest run --workspace --locked %s\n' "$*" >&2
    cargo nextest run --workspace --locked "$@" || status=$?
    if [[ $status -eq 0 && $# -eq 0 ]]; then
        printf 'whistle: cargo test --workspace --locked --doc (nextest does not run doc tests)\n' >&2
        cargo test --workspace --locked --doc || status=$?
    fi
else
    printf 'whistle: cargo test --workspace --locked %s\n' "$*" >&2
    cargo test --workspace --locked "$@" || status=$?
fi
exit "$status"
