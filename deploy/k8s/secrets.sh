#!/usr/bin/env bash
# deploy/k8s/secrets.sh — the files a Kubernetes overlay makes its Secrets from (its
# secretGenerator), written once on an administrator's machine and never committed:
#
#   deploy/k8s/secrets.sh [--namespace NS] [--whistle BIN] DIR     # e.g. deploy/k8s/overlays/ordos/secrets
#   deploy/k8s/secrets.sh --placeholders DIR                        # throwaway files, to render only
#
# DIR (mode 0700) receives, keeping whatever exists (running it again changes nothing):
#   admin.nk dispatch.nk query.nk auth-callout.nk auth-issuer.nk auth-revoker.nk jetstream.key
#   route.password   the deployment's NATS secrets (`whistle nats-config --secrets DIR`)
#   nats-auth.conf   the public half of the rendered nats-server configuration (system account,
#                    accounts with the services' public nkeys, the auth callout), which the NATS
#                    chart's nodes include
#   db/<role>.pgpass a random password per role (whistle_owner, whistle_dispatch, whistle_query),
#                    in the form `whistle db roles` reads and keeps; db/whistle_owner.username and
#                    .password for CloudNativePG's bootstrap of the owner
#   contact-keys     the residents' contact keyring (`whistle contacts keygen`)
#   routes-tls/      a CA and one certificate for every NATS node's routes (server and client use,
#                    named *.whistle-nats-headless in NS), for mutual TLS between the nodes
#
# --whistle names the `whistle` binary (default: $CARGO_TARGET_DIR/release/whistle, else debug,
# else whistle on PATH). --placeholders writes random bytes under the same names without any tool,
# so that `kubectl kustomize` can render an overlay (deploy/package/check.sh); they are no keys.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/../local/paths.sh
source "$HERE/../local/paths.sh"

namespace=whistle-ordos whistle="" placeholders=0 dir=""
while (($#)); do
    case $1 in
        --namespace) namespace=$2; shift ;;
        --whistle) whistle=$2; shift ;;
        --placeholders) placeholders=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "secrets: unknown argument $1 (see --help)" >&2; exit 2 ;;
        *) [[ -z $dir ]] || { echo "secrets: one directory only" >&2; exit 2; }; dir=$1 ;;
    esac
    shift
done
die() { printf 'secrets: error: %s\n' "$*" >&2; exit 1; }
[[ -n $dir ]] || die "name the directory (see --help)"
ROLES=(whistle_owner whistle_dispatch whistle_query)
NKEYS=(admin dispatch query auth-callout auth-issuer auth-revoker)

umask 077
mkdir -p -- "$dir/db" "$dir/routes-tls"
chmod 700 -- "$dir" "$dir/db" "$dir/routes-tls"
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# keep FILE: true when FILE exists and is not empty (it is never replaced).
keep() { [[ -s $1 ]]; }

if ((placeholders)); then
    for name in "${NKEYS[@]}"; do keep "$dir/$name.nk" || random_hex 32 >"$dir/$name.nk"; done
    for name in jetstream.key route.password contact-keys nats-auth.conf routes-tls/tls.crt \
        routes-tls/tls.key routes-tls/ca.crt; do
        keep "$dir/$name" || random_hex 32 >"$dir/$name"
    done
else
    if [[ -z $whistle ]]; then
        whistle=$(whistle__cli_binary) || die "no whistle binary: build it or give --whistle"
    fi
    command -v openssl >/dev/null 2>&1 || die "openssl is needed for the routes' certificates"
    # The whole configuration is rendered (secrets created as needed); only its public part from
    # system_account on is kept: the chart writes the rest (ports, cluster, JetStream's store).
    full=$(mktemp)
    trap 'rm -f -- "$full"' EXIT
    "$whistle" nats-config --secrets "$dir" --port 4222 --store-dir /data/jetstream >"$full"
    sed -n '/^system_account:/,$p' "$full" >"$dir/nats-auth.conf.new"
    grep -q '^authorization {' "$dir/nats-auth.conf.new" || die "whistle nats-config rendered no authorization block"
    mv -f -- "$dir/nats-auth.conf.new" "$dir/nats-auth.conf"
    keep "$dir/contact-keys" || "$whistle" contacts keygen "k8s-$(date -u +%Y-%m)" >"$dir/contact-keys"
    tls=$dir/routes-tls
    if ! keep "$tls/ca.crt"; then
        openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=Whistle NATS routes CA" \
            -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    fi
    if ! keep "$tls/tls.crt"; then
        headless="whistle-nats-headless"
        printf 'subjectAltName=DNS:*.%s,DNS:*.%s.%s,DNS:*.%s.%s.svc,DNS:*.%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth,clientAuth\n' \
            "$headless" "$headless" "$namespace" "$headless" "$namespace" "$headless" "$namespace" >"$tls/node.ext"
        openssl req -newkey rsa:3072 -nodes -subj "/CN=whistle-nats" -keyout "$tls/tls.key" -out "$tls/node.csr" 2>/dev/null
        openssl x509 -req -in "$tls/node.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
            -days 825 -extfile "$tls/node.ext" -out "$tls/tls.crt" 2>/dev/null
        rm -f -- "$tls/node.csr" "$tls/node.ext"
    fi
fi
for role in "${ROLES[@]}"; do
    if ! keep "$dir/db/$role.pgpass"; then
        # Letters and digits only, as `whistle db roles` makes them (nothing to escape in a URL).
        printf '*:*:*:%s:%s\n' "$role" "$(random_hex 24)" >"$dir/db/$role.pgpass"
    fi
done
printf '%s' whistle_owner >"$dir/db/whistle_owner.username"
pgpass_line=$(<"$dir/db/whistle_owner.pgpass")
printf '%s' "${pgpass_line##*:}" >"$dir/db/whistle_owner.password"
printf 'secrets: %s ready (%s)\n' "$dir" "$( ((placeholders)) && echo "placeholders: render only" || echo "keep a copy offline")" >&2
