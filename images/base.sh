#!/usr/bin/env bash
# A distroless-like runtime base, assembled from Debian bookworm's own
# packages, for building the images where no registry can be reached:
#
#   images/base.sh             makes mailroute-base:bookworm and mailroute-stage:bookworm
#
# mailroute-base holds what the binaries link (libc6, libgcc-s1), the CA bundle (from
# ca-certificates, for TLS to next hops and to the API server), /etc/passwd
# with the user nonroot (65532) as distroless has, and /tmp; no shell, no
# package manager. The same glibc as gcr.io/distroless/cc-debian12, which
# the Dockerfile uses by default. mailroute-stage is the same plus
# busybox: the Dockerfile's build stage when it takes prebuilt binaries
# (it only copies files; it is never shipped). Needs a Debian host with apt
# (it only downloads .deb files; nothing is installed) and docker.
set -euo pipefail
tag=mailroute-base:bookworm stage=mailroute-stage:bookworm
work=$(mktemp -d -t mailroute-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$work/debs" "$root"/{etc/ssl/certs,tmp,home/nonroot,root}
(cd "$work/debs" && apt-get download -q=2 -o APT::Sandbox::User=root libc6 libgcc-s1 ca-certificates busybox-static)
mv "$work"/debs/busybox-static_*.deb "$work/"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
# What ca-certificates' postinst would make: one bundle of every trusted CA.
find "$root/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z |
  xargs -0 cat >"$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/usr/share/{doc,man,lintian,locale} "$root"/usr/sbin "$root"/etc/ca-certificates* "${root:?}"/var
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
printf 'PRETTY_NAME="mailroute base (Debian GNU/Linux 12 libraries)"\nID=debian\nVERSION_ID="12"\n' >"$root/etc/os-release"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"
tar -C "$root" --numeric-owner -c . | docker import --change 'USER 65532:65532' - "$tag" >/dev/null
# The stage: the base plus busybox's shell and tools.
mkdir -p "$work/busybox" "$work/stage"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
cp -a "$root/." "$work/stage/"
mkdir -p "$work/stage/bin"
cp "$work/busybox/bin/busybox" "$work/stage/bin/busybox"
for applet in sh cp mkdir ls cat; do ln -s busybox "$work/stage/bin/$applet"; done
tar -C "$work/stage" --numeric-owner -c . | docker import --change 'ENV PATH=/bin' - "$stage" >/dev/null
echo "$tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1 / 1e6}') ($(cd "$work/debs" && ls | sed 's/_[a-z0-9]*\.deb$//' | tr '\n' ' '))"
