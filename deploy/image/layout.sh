#!/usr/bin/env bash
# deploy/image/layout.sh — lay out the Whistle runtime filesystem under a directory: the one
# definition of what the image holds, where, and with which modes. The Containerfile runs it in
# its layout stage and copies the result into the runtime stage whole; deploy/image/assemble.sh
# runs it on this machine, so the tree it shows is the image's.
#
#   deploy/image/layout.sh --bin-dir DIR --console-dir DIR --policy-dir DIR --ca-bundle FILE --out DIR
#
#   --bin-dir      a cargo profile directory holding whistle, whistle-dispatch and whistle-query
#   --console-dir  the built web console (services/whistle-query/console/dist)
#   --policy-dir   the repository's policy/ (the policy files and the holiday calendars)
#   --ca-bundle    the CA certificates (PEM) clients trust: Debian's /etc/ssl/certs/ca-certificates.crt
#   --out          the directory to fill (created; must be empty or missing)
#
# The tree (owner root unless said, modes exact; WHISTLE_UID below):
#   usr/local/bin/{whistle,whistle-dispatch,whistle-query}   0755
#   usr/share/whistle/console/…                              dirs 0755, files 0644
#   usr/share/whistle/policy/…                               dirs 0755, files 0644
#   etc/ssl/certs/ca-certificates.crt                        0644
#   var/lib/whistle/                                         0700, owned by WHISTLE_UID:WHISTLE_UID
#                                                            (the CLI's working directory; the
#                                                            services keep no state on disk)
set -euo pipefail

# The image's user: numeric, no passwd entry needed (the programs never look themselves up).
WHISTLE_UID=10001

bin_dir="" console_dir="" policy_dir="" ca_bundle="" out=""
while (($#)); do
    case $1 in
        --bin-dir) bin_dir=$2; shift ;;
        --console-dir) console_dir=$2; shift ;;
        --policy-dir) policy_dir=$2; shift ;;
        --ca-bundle) ca_bundle=$2; shift ;;
        --out) out=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "layout: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
die() { printf 'layout: error: %s\n' "$*" >&2; exit 1; }
[[ -n $bin_dir && -n $console_dir && -n $policy_dir && -n $ca_bundle && -n $out ]] ||
    die "--bin-dir, --console-dir, --policy-dir, --ca-bundle and --out are all required"
for bin in whistle whistle-dispatch whistle-query; do
    [[ -x $bin_dir/$bin ]] || die "no executable $bin_dir/$bin"
done
[[ -s $console_dir/index.html ]] || die "$console_dir has no index.html: build the console first (deploy/local/console.sh)"
[[ -s $policy_dir/ordos.toml && -d $policy_dir/calendar ]] || die "$policy_dir is not the repository's policy/"
[[ -s $ca_bundle ]] || die "no CA bundle at $ca_bundle"
if [[ -e $out ]] && [[ -n $(ls -A -- "$out") ]]; then
    die "$out is not empty"
fi

# copy_tree SRC DST: SRC's regular files and directories into DST with the image's modes, so the
# modes never depend on the umask or the checkout.
copy_tree() {
    local src=$1 dst=$2 rel
    install -d -m 0755 -- "$dst"
    while IFS= read -r -d '' rel; do
        install -d -m 0755 -- "$dst/$rel"
    done < <(cd -- "$src" && find . -mindepth 1 -type d -printf '%P\0')
    while IFS= read -r -d '' rel; do
        install -m 0644 -- "$src/$rel" "$dst/$rel"
    done < <(cd -- "$src" && find . -type f -printf '%P\0')
}

umask 022
install -d -m 0755 -- "$out" "$out/usr" "$out/usr/local" "$out/usr/local/bin" "$out/usr/share" \
    "$out/usr/share/whistle" "$out/etc" "$out/etc/ssl" "$out/etc/ssl/certs" "$out/var" "$out/var/lib"
for bin in whistle whistle-dispatch whistle-query; do
    install -m 0755 -- "$bin_dir/$bin" "$out/usr/local/bin/$bin"
done
copy_tree "$console_dir" "$out/usr/share/whistle/console"
copy_tree "$policy_dir" "$out/usr/share/whistle/policy"
install -m 0644 -- "$ca_bundle" "$out/etc/ssl/certs/ca-certificates.crt"
install -d -m 0700 -- "$out/var/lib/whistle"
if [[ $EUID -eq 0 ]]; then
    chown -R 0:0 -- "$out"
    chown "$WHISTLE_UID:$WHISTLE_UID" -- "$out/var/lib/whistle"
else
    echo "layout: not root: files keep your owner (the image has root, and $WHISTLE_UID for var/lib/whistle)" >&2
fi
printf 'layout: %s: %s files\n' "$out" "$(find "$out" -type f | wc -l)" >&2
