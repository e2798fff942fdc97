# deploy/local/paths.sh — sourced by the scripts that run the project's builds: sets REPO (the
# checkout) and TARGET_DIR (cargo's target directory, $CARGO_TARGET_DIR made absolute, else
# $REPO/target).
# shellcheck shell=bash
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac

# whistle__roles OUTPUT: sets OWNER_URL/_PASSFILE, DISPATCH_URL/_PASSFILE and QUERY_URL/_PASSFILE
# from what `whistle db roles` printed (a line per role: kind, URL without password, password file);
# fails unless all three were there.
# shellcheck disable=SC2034 # the variables are the callers'
whistle__roles() {
    local kind url passfile
    while read -r kind url passfile; do
        case $kind in
            owner) OWNER_URL=$url OWNER_PASSFILE=$passfile ;;
            dispatch) DISPATCH_URL=$url DISPATCH_PASSFILE=$passfile ;;
            query) QUERY_URL=$url QUERY_PASSFILE=$passfile ;;
        esac
    done <<<"$1"
    [[ -n ${OWNER_URL:-} && -n ${DISPATCH_URL:-} && -n ${QUERY_URL:-} ]]
}

# whistle__cli_binary: the `whistle` binary of this checkout's builds (release, else debug), else
# the one on PATH; prints nothing and fails when there is none.
whistle__cli_binary() {
    local candidate
    for candidate in "$TARGET_DIR/release/whistle" "$TARGET_DIR/debug/whistle"; do
        [[ -x $candidate ]] && { printf '%s\n' "$candidate"; return 0; }
    done
    command -v whistle
}
