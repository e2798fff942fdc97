#!/usr/bin/env bash
# deploy/compose/secrets.sh — the files deploy/compose/compose.yaml mounts as compose secrets, made
# once and never committed (deploy/compose/secrets/ is git-ignored):
#
#   deploy/compose/secrets.sh [--whistle BIN] [--placeholders]
#
#   nats/            the deployment's NATS secrets (`whistle nats-config --secrets`): the services'
#                    and the admin's nkey seeds, the callout's issuer and revoker, JetStream's key,
#                    the routes' password
#   nats1.conf …     each node's rendered configuration (paths as the containers see them)
#   routes-tls/      a CA and each node's route certificate (server and client use, named natsN)
#   pg/              the superuser's and the replicator's passwords (and pgpass files), a CA and
#                    the server certificate both PostgreSQL nodes present (named pg1 and pg2)
#   db/              a random password per Whistle role, kept by `whistle db roles`
#   contact-keys     the residents' contact keyring
#
# Files that exist are kept. As root it also gives each file to the user of the container that
# reads it (compose without swarm bind-mounts secrets as they are): 10001 for the Whistle image's,
# 999 for the postgres image's; nats runs as root. --placeholders writes random bytes under the
# same names, enough for `docker compose config` to resolve the secrets; they are no keys.
# --whistle names the `whistle` binary (default: $CARGO_TARGET_DIR/release/whistle, else debug,
# else on PATH).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/../local/paths.sh
source "$HERE/../local/paths.sh"

whistle="" placeholders=0
while (($#)); do
    case $1 in
        --whistle) whistle=$2; shift ;;
        --placeholders) placeholders=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "secrets: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
die() { printf 'secrets: error: %s\n' "$*" >&2; exit 1; }
S=$HERE/secrets
WHISTLE_UID=10001 POSTGRES_UID=999
umask 077
mkdir -p -- "$S/nats" "$S/routes-tls" "$S/pg" "$S/db"
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
keep() { [[ -s $1 ]]; }
# pgpass FILE ROLE PASSWORD: a pgpass line for any host, port and database.
pgpass() { keep "$1" || printf '*:*:*:%s:%s\n' "$2" "$3" >"$1"; }
password_of() { local line; line=$(<"$1"); printf '%s' "${line##*:}"; }

for role in whistle_owner whistle_dispatch whistle_query; do pgpass "$S/db/$role.pgpass" "$role" "$(random_hex 24)"; done
keep "$S/pg/superuser.password" || random_hex 24 >"$S/pg/superuser.password"
keep "$S/pg/replicator.password" || random_hex 24 >"$S/pg/replicator.password"
pgpass "$S/pg/superuser.pgpass" postgres "$(<"$S/pg/superuser.password")"
pgpass "$S/pg/replicator.pgpass" whistle_replicator "$(<"$S/pg/replicator.password")"
[[ $(password_of "$S/pg/superuser.pgpass") == "$(<"$S/pg/superuser.password")" ]] ||
    die "$S/pg/superuser.pgpass and superuser.password disagree"

if ((placeholders)); then
    for f in nats/admin.nk nats/dispatch.nk nats/query.nk nats/auth-callout.nk nats/auth-issuer.nk \
        nats/auth-revoker.nk contact-keys nats1.conf nats2.conf nats3.conf routes-tls/ca.crt \
        pg/ca.crt pg/server.crt pg/server.key; do
        keep "$S/$f" || random_hex 32 >"$S/$f"
    done
    for n in 1 2 3; do
        for f in "routes-tls/nats$n.crt" "routes-tls/nats$n.key"; do keep "$S/$f" || random_hex 32 >"$S/$f"; done
    done
else
    if [[ -z $whistle ]]; then
        whistle=$(whistle__cli_binary) || die "no whistle binary: build it or give --whistle"
    fi
    command -v openssl >/dev/null 2>&1 || die "openssl is needed for the certificates"
    # ca DIR CN: a CA (once).
    ca() {
        keep "$1/ca.crt" && return 0
        openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=$2" -keyout "$1/ca.key" \
            -out "$1/ca.crt" 2>/dev/null
    }
    # cert DIR NAME SANS EKU: NAME.crt and NAME.key signed by DIR's CA (once).
    cert() {
        local dir=$1 name=$2
        keep "$dir/$name.crt" && return 0
        printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "$4" >"$dir/$name.ext"
        openssl req -newkey rsa:3072 -nodes -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
            -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
        rm -f -- "$dir/$name.csr" "$dir/$name.ext"
    }
    ca "$S/routes-tls" "Whistle NATS routes CA"
    ca "$S/pg" "Whistle PostgreSQL CA"
    cert "$S/pg" server "DNS:pg1,DNS:pg2" serverAuth
    for n in 1 2 3; do
        cert "$S/routes-tls" "nats$n" "DNS:nats$n" serverAuth,clientAuth
        args=(nats-config --secrets "$S/nats" --host 0.0.0.0 --port 4222 --http-port 8222 --store-dir /data
            --server-name "nats$n" --cluster-name whistle --cluster-port 6222
            --cluster-tls-cert "/run/secrets/nats$n.crt" --cluster-tls-key "/run/secrets/nats$n.key"
            --cluster-tls-ca /run/secrets/nats-routes-ca.crt --output "$S/nats$n.conf")
        for m in 1 2 3; do ((m == n)) || args+=(--route "nats$m:6222"); done
        "$whistle" "${args[@]}"
    done
    keep "$S/contact-keys" || "$whistle" contacts keygen "compose-$(date -u +%Y-%m)" >"$S/contact-keys"
fi

chmod 0644 -- "$S/routes-tls/ca.crt" "$S/pg/ca.crt" "$S/pg/server.crt"
if [[ $EUID -eq 0 ]]; then
    chown -R "$WHISTLE_UID:$WHISTLE_UID" -- "$S/db" "$S/contact-keys"
    chown "$WHISTLE_UID:$WHISTLE_UID" -- "$S"/nats/*.nk "$S/pg/superuser.pgpass"
    chown "$POSTGRES_UID:$POSTGRES_UID" -- "$S/pg/superuser.password" "$S/pg/replicator.password" \
        "$S/pg/replicator.pgpass" "$S/pg/server.key"
else
    echo "secrets: not root: the files stay yours; chown them as the header says before 'up'" >&2
fi
printf 'secrets: %s ready (%s)\n' "$S" "$( ((placeholders)) && echo "placeholders: validation only" || echo "keep a copy offline")" >&2
