# deploy/local/paths.sh — sourced by the scripts that run the project's builds: sets REPO (the
# checkout) and TARGET_DIR (cargo's target directory, $CARGO_TARGET_DIR made absolute, else
# $REPO/target).
# shellcheck shell=bash
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac
