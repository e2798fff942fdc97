#!/usr/bin/env bash
# deploy/local/down.sh — stop the private nats-server and PostgreSQL that env.sh started (their data
# stays for next time). `--purge` also deletes all local state: $WHISTLE_HOME (default <repo>/.whistle), secrets included.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

purge=0
for arg in "$@"; do
    case $arg in
        --purge) purge=1 ;;
        -h | --help)
            sed -n '2,3s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            printf 'whistle: error: unknown argument %s (usage: down.sh [--purge])\n' "$arg" >&2
            exit 2
            ;;
    esac
done

# Only the variables and functions: start nothing.
WHISTLE_ENV_NO_START=1
# shellcheck source=SCRIPTDIR/env.sh
source "$HERE/env.sh"

whistle_stop_private

if [[ $purge == 1 ]]; then
    case $WHISTLE_HOME in
        / | "$HOME" | "$WHISTLE_REPO" | "")
            printf 'whistle: error: refusing to delete WHISTLE_HOME=%s\n' "$WHISTLE_HOME" >&2
            exit 1
            ;;
    esac
    whistle__pg_paths
    if [[ -d $WHISTLE__PG_ALTBASE ]]; then
        rm -rf -- "$WHISTLE__PG_ALTBASE"
        rmdir -- "$(dirname -- "$WHISTLE__PG_ALTBASE")" 2>/dev/null || true
        printf 'whistle: deleted %s\n' "$WHISTLE__PG_ALTBASE" >&2
    fi
    if [[ -e $WHISTLE_HOME ]]; then
        rm -rf -- "$WHISTLE_HOME"
        printf 'whistle: deleted %s\n' "$WHISTLE_HOME" >&2
    else
        printf 'whistle: %s does not exist\n' "$WHISTLE_HOME" >&2
    fi
fi
