#!/usr/bin/env bash
# deploy/local/rolling-upgrade.sh — the rolling upgrade under load, long form (docs/operations.md,
# "Upgrades"): from an older commit's binaries to this checkout's, with nothing lost.
#
#   deploy/local/rolling-upgrade.sh --from REV [--duration 5m] [--rate 100] [--command-rate 5]
#                                   [--kills 0] [--seed 1] [--keep-build DIR] [--work-dir DIR]
#                                   [--debug]
#
# 1. REV's whistle-dispatch is built (release) in a temporary git worktree of REV with a target
#    directory of its own (--keep-build DIR: that directory, kept and reused next time; REV's build
#    costs 10 minutes and more on 2 cores), and this checkout's whistle and whistle-dispatch
#    (release, CARGO_TARGET_DIR or target/).
# 2. `whistle chaos --upgrade-to` runs the drill on private servers of its own: the database is
#    migrated with REV's crates/store/migrations and two replicas of REV's dispatch, on REV's
#    policy/ordos.toml (durations divided), serve a load of
#    reports, commands and deadlines; at 30 % of the run this checkout's migrations are applied while
#    they serve (as `whistle migrate` does: as the owner, then the services' rights), then each REV
#    replica is replaced, one at a time, by one of this checkout's (started, serving, then the old one
#    SIGTERM'd and drained); the load runs on to the end.
# 3. The checker's figures are printed (reports, commands, events, timers; the upgrade's times and
#    the longest intake pause); the exit status is 0 only if nothing was lost, duplicated or fired
#    twice or missed.
#
# --debug builds and runs debug binaries instead (minutes rather than tens of minutes when DIR
# holds a debug build of a nearby commit; slower dispatch, the same guarantees).
#
# A REV whose schema lacks what this checkout's seeding writes cannot start (the drill seeds with
# this checkout's code). nats-server and PostgreSQL binaries as env.sh finds them.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/paths.sh
source "$HERE/paths.sh"

from='' duration=5m rate=100 command_rate=5 kills=0 seed=1 keep_build='' work_dir='' profile=release
while (($#)); do
    case $1 in
        --from) from=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --command-rate) command_rate=$2; shift 2 ;;
        --kills) kills=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --keep-build) keep_build=$2; shift 2 ;;
        --work-dir) work_dir=$2; shift 2 ;;
        --debug) profile=debug; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "rolling-upgrade: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -n $from ]] || { echo "rolling-upgrade: --from REV is required (see --help)" >&2; exit 2; }
rev=$(git -C "$REPO" rev-parse --verify --quiet "$from^{commit}") ||
    { echo "rolling-upgrade: $from is not a commit of $REPO" >&2; exit 2; }

# shellcheck source=SCRIPTDIR/env.sh
WHISTLE_ENV_NO_START=1 source "$HERE/env.sh"
whistle_ensure_nats_bin
whistle_ensure_pg_bindir
export WHISTLE_NATS_SERVER_BIN WHISTLE_PG_BINDIR

tmp=$(mktemp -d "${TMPDIR:-/tmp}/whistle-upgrade.XXXXXX")
old_src=$tmp/src
cleanup() {
    git -C "$REPO" worktree remove --force "$old_src" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
old_target=${keep_build:-$tmp/target}
case $old_target in /*) ;; *) old_target=$PWD/$old_target ;; esac

build=(cargo build --locked)
[[ $profile == debug ]] || build+=(--release)
echo "rolling-upgrade: building this checkout ($(git -C "$REPO" rev-parse --short HEAD), $profile) in $TARGET_DIR" >&2
(cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR "${build[@]}" -p whistle-cli -p whistle-dispatch)
echo "rolling-upgrade: building ${rev:0:12} in a worktree, target $old_target" >&2
git -C "$REPO" worktree add --detach "$old_src" "$rev" >/dev/null
t0=$SECONDS
(cd "$old_src" && CARGO_TARGET_DIR=$old_target "${build[@]}" -p whistle-dispatch)
echo "rolling-upgrade: ${rev:0:12} built in $((SECONDS - t0)) s" >&2

args=(
    chaos
    --dispatch-bin "$old_target/$profile/whistle-dispatch"
    --from-migrations "$old_src/crates/store/migrations"
    --from-policy "$old_src/policy/ordos.toml"
    --upgrade-to "$TARGET_DIR/$profile/whistle-dispatch"
    --to-migrations "$REPO/crates/store/migrations"
    --duration "$duration" --rate "$rate" --command-rate "$command_rate"
    --kills "$kills" --seed "$seed"
)
[[ -z $work_dir ]] || args+=(--work-dir "$work_dir")
echo "rolling-upgrade: from ${rev:0:12} to this checkout, $duration at $rate reports/s" >&2
"$TARGET_DIR/$profile/whistle" "${args[@]}"
