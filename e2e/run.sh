#!/usr/bin/env bash
# mailroute's end-to-end suite (CONTRIBUTING.md, "End to end").
#
#   e2e/run.sh local     against the cluster KUBECONFIG points at (an API
#                        server is enough: no pods), with the operator and
#                        relay run as local processes. Needs kubectl and
#                        cluster-admin: it installs the CRDs and creates
#                        throw-away namespaces.
#   e2e/run.sh cluster   the Helm chart on the cluster KUBECONFIG points at:
#                        images built and loaded with IMAGE_LOAD, helm
#                        install, mail through the relay pods, rollouts and
#                        faults under load, helm upgrade and uninstall. See
#                        e2e/cluster.sh.
#   e2e/run.sh kind      creates a kind cluster (KIND_CLUSTER, default
#                        mailroute-e2e; kept if it exists), then `cluster`
#                        with kind's image loading. Needs docker and kind.
#
# MAILROUTE_E2E_KEEP=1 keeps the test namespaces (and the kind cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
  local | cluster | kind) ;;
  *) echo "usage: e2e/run.sh local|cluster|kind" >&2; exit 2 ;;
esac
for tool in kubectl curl $([ "$mode" != local ] && echo docker) $([ "$mode" = kind ] && echo kind); do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done

if [ "$mode" = kind ]; then
  exec e2e/kind.sh
fi
kubectl version >/dev/null 2>&1 || { echo "no reachable cluster (KUBECONFIG=${KUBECONFIG:-~/.kube/config})" >&2; exit 2; }
if [ "$mode" = cluster ]; then
  exec e2e/cluster.sh
fi

echo "== building"
cargo build --release --locked -p operator --bin mailroute -p relay --bin mailroute-relay --example sink
target=$(tools/target-dir)/release

echo "== installing the CRDs"
kubectl apply --server-side -f crds/mailroute.io.yaml
kubectl wait --for=condition=Established --timeout=60s \
  crd/addressspaces.mailroute.io crd/recipientpolicies.mailroute.io \
  crd/mailcontacts.mailroute.io crd/smtpconnectors.mailroute.io

mkdir -p "$(dirname "$target")/e2e-logs"
log=$(dirname "$target")/e2e-logs/operator-local.log
self_names="relay.e2e.invalid,mailroute-relay.mail.svc.cluster.local"
echo "== starting the operator (log: $log)"
MAILROUTE_LOG=info "$target/mailroute" operator \
  --leader-elect=false --metrics-listen 127.0.0.1:18080 --self "$self_names" >"$log" 2>&1 &
operator=$!
cleanup() {
  kill "$operator" 2>/dev/null || true
  wait "$operator" 2>/dev/null || true
  if [ -z "${MAILROUTE_E2E_KEEP:-}" ]; then
    kubectl delete namespace -l mailroute.io/e2e=true --wait=false >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
for _ in $(seq 1 60); do
  curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
  kill -0 "$operator" 2>/dev/null || { echo "the operator exited:"; cat "$log"; exit 1; }
  sleep 0.5
done

echo "== running the suite"
status=0
MAILROUTE_E2E=local E2E_SELF="$self_names" \
  E2E_RELAY="$target/mailroute-relay" E2E_SINK="$target/examples/sink" \
  cargo test --locked -p e2e -- --test-threads=1 --nocapture || status=$?
if [ "$status" -ne 0 ]; then
  echo "== the suite failed; the operator's log:"
  tail -n 200 "$log"
fi
exit "$status"
