#!/usr/bin/env bash
# e2e/run.sh kind: the chart on a kind cluster (see e2e/run.sh for what it
# needs). Steps: cluster → images → helm install → suite → demo mail with a
# mounted table after `helm upgrade` → helm uninstall leaves only the CRDs.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${KIND_CLUSTER:-mailroute-e2e}"
ns=mailroute
release=mailroute
tag=dev
self_names=relay.e2e.invalid
logs=target/e2e-logs
command -v swaks >/dev/null || { echo "swaks is required" >&2; exit 2; }

created=
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "== creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config e2e/kind.yaml --wait 180s
  created=1
fi
kind export kubeconfig --name "$cluster"

collect_logs() {
  mkdir -p "$logs"
  echo "== collecting logs in $logs"
  kubectl get all,cm,lease,events -A -o wide >"$logs/cluster.txt" 2>&1 || true
  kubectl get mailroute -A -o yaml >"$logs/mailroute-objects.yaml" 2>&1 || true
  for pod in $(kubectl get pods -A -l 'app.kubernetes.io/name=mailroute' -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{" "}{end}' 2>/dev/null); do
    kubectl logs -n "${pod%%/*}" "${pod#*/}" --all-containers --prefix >"$logs/${pod//\//_}.log" 2>&1 || true
    kubectl logs -n "${pod%%/*}" "${pod#*/}" --all-containers --previous >"$logs/${pod//\//_}.previous.log" 2>/dev/null || true
  done
  kubectl describe pods -n "$ns" >"$logs/pods-described.txt" 2>&1 || true
}
finish() {
  local status=$?
  [ "$status" -ne 0 ] && collect_logs
  kill "${forward:-}" 2>/dev/null || true
  if [ -n "$created" ] && [ -z "${MAILROUTE_E2E_KEEP:-}" ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  elif [ -z "${MAILROUTE_E2E_KEEP:-}" ]; then
    kubectl delete namespace -l mailroute.io/e2e=true --wait=false >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap finish EXIT

echo "== building and loading the images"
for target in operator relay sink; do
  docker build --target "$target" -t "mailroute-$target:$tag" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" .
  kind load docker-image --name "$cluster" "mailroute-$target:$tag"
done

echo "== helm install"
images=(
  --set operator.image.repository=mailroute-operator --set "operator.image.tag=$tag"
  --set operator.image.pullPolicy=Never
  --set relay.image.repository=mailroute-relay --set "relay.image.tag=$tag"
  --set relay.image.pullPolicy=Never
)
helm install "$release" charts/mailroute -n "$ns" --create-namespace "${images[@]}" \
  --set relay.tableSource=watch --set "operator.extraSelfAddresses={$self_names}"
kubectl -n "$ns" rollout status deploy/mailroute-operator --timeout=180s
# The relay runs but is not Ready until its namespace has a published table.
kubectl -n "$ns" wait --for=jsonpath='{.status.phase}'=Running pod \
  -l app.kubernetes.io/component=relay --timeout=180s

echo "== the suite, against the in-cluster operator and relay"
MAILROUTE_E2E=kind E2E_SELF="$self_names" E2E_RELEASE_NAMESPACE="$ns" \
  E2E_RELAY_SERVICE=mailroute-relay E2E_SINK_IMAGE="mailroute-sink:$tag" \
  cargo test --release --locked -p e2e -- --test-threads=1 --nocapture

echo "== helm upgrade to a mounted table, then the README's demo message"
sed "s/image: mailroute-sink:dev/image: mailroute-sink:$tag/" deploy/demo/demo.yaml |
  kubectl apply -n "$ns" -f -
kubectl -n "$ns" wait --for=condition=Ready mailcontact/ann --timeout=60s
helm upgrade "$release" charts/mailroute -n "$ns" --reuse-values --set relay.tableSource=mount
kubectl -n "$ns" rollout status deploy/mailroute-operator --timeout=180s
# maxUnavailable 0: the new pods must load the mounted table to be Ready.
kubectl -n "$ns" rollout status deploy/mailroute-relay --timeout=300s
kubectl -n "$ns" rollout status deploy/demo-mailbox --timeout=120s
kubectl -n "$ns" port-forward svc/mailroute-relay 2525:25 >/dev/null &
forward=$!
for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 1; done
swaks --server 127.0.0.1:2525 --from e2e@example.org --to ann@demo.example \
  --header "Subject: kind-demo" --body "mailroute e2e"
for _ in $(seq 1 30); do
  kubectl -n "$ns" logs deploy/demo-mailbox | grep -q '"kind-demo"' && break
  sleep 1
done
kubectl -n "$ns" logs deploy/demo-mailbox | grep '"kind-demo"'
kill "$forward"

echo "== helm uninstall leaves nothing behind but the CRDs (and your objects)"
helm uninstall "$release" -n "$ns" --wait --timeout 300s
# Helm deletes Deployments and the hook's Job; their pods go by garbage collection.
kubectl -n "$ns" wait --for=delete pod -l "app.kubernetes.io/instance=$release" --timeout=180s
left=$(
  kubectl get deploy,rs,pod,svc,cm,secret,sa,role,rolebinding,pdb,hpa,networkpolicy,job \
    -n "$ns" -l "app.kubernetes.io/instance=$release" -o name
  kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=$release" -o name
  kubectl get cm -A -l app.kubernetes.io/managed-by=mailroute -o name
  kubectl get lease -n "$ns" mailroute-operator -o name --ignore-not-found
)
if [ -n "$left" ]; then
  echo "left behind after helm uninstall:"
  echo "$left"
  exit 1
fi
kubectl get crd addressspaces.mailroute.io recipientpolicies.mailroute.io \
  mailcontacts.mailroute.io smtpconnectors.mailroute.io
echo "== kind e2e passed"
