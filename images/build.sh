#!/usr/bin/env bash
# Builds the three images where no registry can be reached (docs/install.md,
# "Images"), from binaries compiled on this host:
#
#   images/build.sh [TAG]         default TAG: dev
#
# This host must be Debian bookworm (or have its glibc 2.36 or older): the
# binaries run on the runtime base's. It compiles with the release profile
# (the build the tests and the demo share), stages copies without debug
# info in target/image-bin/, makes the bases with images/base.sh unless
# they are there or RUNTIME_IMAGE / BUILD_IMAGE name others, and builds
# mailroute-operator:TAG, mailroute-relay:TAG and mailroute-sink:TAG with
# BINARIES=prebuilt. It prints each image's size.
#
# On any other host (its glibc may be newer than the runtime's), it builds
# the way a release does instead: compiling in the Dockerfile's Rust image
# on the default bases, which needs their registries.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-dev}
if ! docker info >/dev/null 2>&1; then
  echo "images/build.sh: no Docker daemon answers (docker info); start one first" >&2
  echo "  (Debian: apt-get install docker.io; on the test kit: ../shared/kube/dockerd.sh start)" >&2
  exit 1
fi
if ! grep -qs '^12\.' /etc/debian_version; then
  echo "== not Debian bookworm: compiling in the Dockerfile's build image"
  for target in operator relay sink; do
    docker build -q --target "$target" -t "mailroute-$target:$tag" . >/dev/null
    docker image inspect -f "{{index .RepoTags 0}} {{.Size}}" "mailroute-$target:$tag" |
      awk '{printf "%s: %.1f MB\n", $1, $2 / 1e6}'
  done
  exit 0
fi
runtime=${RUNTIME_IMAGE:-mailroute-base:bookworm}
stage=${BUILD_IMAGE:-mailroute-stage:bookworm}
if ! docker image inspect "$runtime" "$stage" >/dev/null 2>&1; then
  images/base.sh
fi
echo "== cargo build --release (mailroute, mailroute-relay, sink)"
cargo build --release --locked -p operator --bin mailroute -p relay --bin mailroute-relay --example sink
# Staged in ./target/image-bin, inside the build context, wherever cargo
# builds (tools/target-dir).
release=$(tools/target-dir)/release
mkdir -p target/image-bin
for bin in mailroute mailroute-relay examples/sink; do
  objcopy --strip-debug "$release/$bin" "target/image-bin/$(basename "$bin")"
done
# The classic builder (DOCKER_BUILDKIT=0) unless told otherwise: Debian's
# docker.io has no buildx, and the Dockerfile needs no BuildKit.
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
for target in operator relay sink; do
  echo "== docker build --target $target -t mailroute-$target:$tag"
  DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -q --target "$target" -t "mailroute-$target:$tag" \
    --build-arg BINARIES=prebuilt --build-arg BUILD_IMAGE="$stage" --build-arg RUNTIME_IMAGE="$runtime" \
    --build-arg REVISION="$revision" . >/dev/null
done
for target in operator relay sink; do
  docker image inspect -f "{{index .RepoTags 0}} {{.Size}}" "mailroute-$target:$tag" |
    awk '{printf "%s: %.1f MB\n", $1, $2 / 1e6}'
done
