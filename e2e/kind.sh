#!/usr/bin/env bash
# e2e/run.sh kind: a kind cluster (created unless it exists), then the
# cluster suite (e2e/cluster.sh) with kind's own image loading.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER:-mailroute-e2e}"
created=
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "== creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config e2e/kind.yaml --wait 180s
  created=1
fi
kind export kubeconfig --name "$cluster"
finish() {
  local status=$?
  if [ -n "$created" ] && [ -z "${MAILROUTE_E2E_KEEP:-}" ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap finish EXIT
client=curlimages/curl:8.11.1
docker pull -q "$client" >/dev/null
kind load docker-image --name "$cluster" "$client"
IMAGE_LOAD="kind load docker-image --name $cluster" E2E_CLIENT_IMAGE="$client" \
  E2E_CRICTL="docker exec {node} crictl" e2e/cluster.sh
