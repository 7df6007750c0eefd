#!/usr/bin/env bash
# Debian's Exim as a test peer beside Postfix (relay/tests/senders.rs).
# The two conflict as packages (each is the machine's mail transport
# agent), so Exim's binary is taken from its .deb and extracted under
# cargo's target directory (interop/exim/usr/sbin/exim4, where
# relay/build.rs looks), with the libraries it links and the user it runs
# deliveries as. Nothing of the machine's mail system changes. Needs root
# and Debian's package mirror.
#
#   relay/tests/peers/fetch-exim.sh          fetch it (once)
#   relay/tests/peers/fetch-exim.sh --path   fetch it, then print the
#                                            binary's path (for MAILROUTE_EXIM,
#                                            which builds with their own target
#                                            directory, the fuzz targets', need)
set -euo pipefail
print_path=0
[ "${1:-}" = --path ] && print_path=1
cd "$(dirname "$0")/../../.."
target=$(tools/target-dir)
dest=$target/interop/exim
done_() { if [ "$print_path" = 1 ]; then echo "$dest/usr/sbin/exim4"; fi; exit 0; }
if [ -x "$dest/usr/sbin/exim4" ] && id Debian-exim >/dev/null 2>&1; then
  done_
fi
echo "== Exim for the interop tests, from Debian's exim4-daemon-light, into $dest" >&2
export DEBIAN_FRONTEND=noninteractive
# Another checkout's tests, or CI, may be running apt at the same moment:
# wait for its locks instead of failing, and take them only when needed.
apt=(apt-get -o DPkg::Lock::Timeout=600)
apt-cache show exim4-daemon-light >/dev/null 2>&1 || "${apt[@]}" update -qq >&2
# What the binary links (apt-cache depends exim4-daemon-light).
libs=(libdb5.3 libgnutls-dane0 libgnutls30 libidn12 libidn2-0 libnsl2 libpcre2-8-0 libcrypt1)
dpkg -s "${libs[@]}" >/dev/null 2>&1 || "${apt[@]}" install -y -qq "${libs[@]}" >/dev/null
id Debian-exim >/dev/null 2>&1 ||
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
download() { (cd "$work" && apt-get download -qq exim4-daemon-light >&2 2>/dev/null); }
# Lists too old for the mirror: fetch them again, once.
download || { "${apt[@]}" update -qq >&2 && download; }
rm -rf "$dest"
mkdir -p "$dest"
dpkg -x "$work"/exim4-daemon-light_*.deb "$dest"
# -bV prints what the binary supports (and fails for want of the
# system's configuration, which the tests never use).
version=$("$dest/usr/sbin/exim4" -bV 2>&1 || true)
grep -q "^Support for:.* PRDR" <<<"$version" ||
  { echo "fetch-exim.sh: $dest/usr/sbin/exim4 does not run or has no PRDR: $version" >&2; exit 1; }
done_
