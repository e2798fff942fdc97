#!/usr/bin/env bash
# Validates deploy/observability: the alert rules load (promtool check rules), each alert fires and
# stays quiet as its unit tests say against recorded series (promtool test rules), and the rules
# and the Grafana dashboard name only metrics the services' code registers (check_metrics.py).
#
# Installs promtool when it is missing, from Debian's prometheus package (as root or through sudo);
# the package's Prometheus service is neither started nor enabled. Takes about a second once
# promtool is installed; needs python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

log() { printf 'observability: %s\n' "$*" >&2; }

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "error: need root to run '$*', and sudo is not installed"
        return 1
    fi
}

install_promtool() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "error: promtool not found and apt-get not available: install Prometheus's promtool"
        return 1
    fi
    log "installing promtool (Debian package prometheus)"
    # policy-rc.d 101 keeps the package's service from starting while it installs.
    local policy=/usr/sbin/policy-rc.d created=0
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
        created=1
    fi
    local status=0
    as_root apt-get update -qq >/dev/null &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
        status=$?
    if [[ $created -eq 1 ]]; then
        as_root rm -f "$policy"
    fi
    [[ $status -eq 0 ]] || return "$status"
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    command -v promtool >/dev/null 2>&1
}

command -v promtool >/dev/null 2>&1 || install_promtool
cd "$here"
promtool check rules alerts.yml
promtool test rules alerts.test.yml
python3 "$here/check_metrics.py" "$root"
log "ok"
