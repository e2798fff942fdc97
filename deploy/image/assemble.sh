#!/usr/bin/env bash
# deploy/image/assemble.sh — the Whistle image's filesystem on a machine without a container
# daemon: builds the three binaries and the web console, then lays them out with
# deploy/image/layout.sh, the script the Containerfile's layout stage runs, so the tree holds the
# image's paths and modes (docs/operations.md, "Packaging: image, compose, Kubernetes").
#
#   deploy/image/assemble.sh [--profile debug|release] [--out DIR] [--no-build] [--smoke]
#
#   --profile   cargo profile of the binaries (default release, as the image; debug builds in
#               minutes instead of half an hour and lays out the same tree)
#   --out       where to lay the tree out (default $CARGO_TARGET_DIR/image/rootfs, replaced)
#   --no-build  use the binaries of $CARGO_TARGET_DIR/<profile> and the console's dist/ as they are
#   --smoke     then run deploy/image/smoke.sh on the tree: NATS and PostgreSQL as deploy/local
#               starts them, dispatch and query from the tree as the image's non-root user
#
# Must run as root (the tree's files are root's, var/lib/whistle the image user's, as in the image).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/../local/paths.sh
source "$HERE/../local/paths.sh"

profile=release out="" build=1 smoke=0
while (($#)); do
    case $1 in
        --profile) profile=$2; shift ;;
        --out) out=$2; shift ;;
        --no-build) build=0 ;;
        --smoke) smoke=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "assemble: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
log() { printf 'assemble: %s\n' "$*" >&2; }
die() { printf 'assemble: error: %s\n' "$*" >&2; exit 1; }
case $profile in
    release) cargo_profile=(--release) ;;
    debug) cargo_profile=() ;;
    *) die "--profile is debug or release, not $profile" ;;
esac
[[ $EUID -eq 0 ]] || die "run as root: the tree's files belong to root and var/lib/whistle to uid 10001, as in the image"
out=${out:-$TARGET_DIR/image/rootfs}
case $out in /*) ;; *) out=$PWD/$out ;; esac

started=$(date +%s)
if ((build)); then
    cmd=(cargo build --locked "${cargo_profile[@]}" --bin whistle --bin whistle-dispatch --bin whistle-query)
    log "building: ${cmd[*]}"
    (cd "$REPO" && "${cmd[@]}")
    # The console's build, as the Containerfile's console stage: npm ci when the lock changed,
    # then npm run build (deploy/local/console.sh).
    WHISTLE_CONSOLE_NO_BUILD=1
    # shellcheck source=SCRIPTDIR/../local/console.sh
    source "$REPO/deploy/local/console.sh"
    whistle_build_console || die "building the web console failed"
fi
console_dir=$REPO/services/whistle-query/console/dist
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[[ -s $ca_bundle ]] || die "no $ca_bundle: install Debian's ca-certificates (the image takes it from its Debian builder)"

rm -rf -- "$out"
"$HERE/layout.sh" --bin-dir "$TARGET_DIR/$profile" --console-dir "$console_dir" --policy-dir "$REPO/policy" \
    --ca-bundle "$ca_bundle" --out "$out"
log "tree in $out ($(du -sh -- "$out" | cut -f1), $profile binaries) in $(($(date +%s) - started)) s:"
(cd "$out" && find . -mindepth 1 -maxdepth 4 -printf '%M %u:%g %8s %p\n' | sort -k4 | sed 's/^/assemble:   /') >&2
if ((smoke)); then
    exec "$HERE/smoke.sh" --root "$out"
fi
