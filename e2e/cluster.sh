#!/usr/bin/env bash
# e2e/run.sh cluster: the chart on the cluster KUBECONFIG points at.
#
#   IMAGE_LOAD="<command that makes local images available to the cluster>" e2e/run.sh cluster
#
# IMAGE_LOAD gets the image names as arguments: the kube kit's
# load-image.sh, `kind load docker-image --name CLUSTER`, or a script that
# tags and pushes to your registry. Steps: build the images (images/build.sh)
# and load them; a release namespace enforcing the restricted Pod Security
# Standard; helm install (watch mode, NodePort Service); the suite against
# the in-cluster operator and relay (tests cfg e2e_cluster); helm upgrade to
# a mounted table and the propagation figure again; helm upgrade back;
# helm uninstall leaves only the CRDs and the users' objects.
#
# Also: E2E_CLIENT_IMAGE (an image with curl, for the client pod; default
# local/tools:bookworm, the kit's), E2E_CRICTL (how to reach the node's
# container runtime; default crictl), HELM (Helm 4; default the one
# charts/test.sh fetched), E2E_SCALE_CONTACTS (the scale test's contacts;
# default 2,000), E2E_TAG (default e2e), E2E_FIGURES (where the
# measured figures go; default target/e2e-figures.txt). On failure the
# pods' logs and the cluster's objects and events land in target/e2e-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

ns=mailroute
release=mailroute
tag=${E2E_TAG:-e2e}
self_names="relay.e2e.invalid,mailroute-relay.mail.svc.cluster.local"
target=$(tools/target-dir)
logs=$target/e2e-logs
export E2E_FIGURES=${E2E_FIGURES:-$target/e2e-figures.txt}
: "${IMAGE_LOAD:?set IMAGE_LOAD to the command that loads images into the cluster (see e2e/cluster.sh)}"
if [ -z "${HELM:-}" ]; then
  [ -x "$target/chart-tools/helm4" ] || charts/test.sh >/dev/null
  HELM=$target/chart-tools/helm4
fi
started=$SECONDS
step() { echo "== $* ($((SECONDS - started)) s)"; }
: >"$E2E_FIGURES"
figure() { echo "$*" | tee -a "$E2E_FIGURES"; }

collect_logs() {
  mkdir -p "$logs"
  echo "== collecting logs in $logs"
  kubectl get all,cm,lease,events -A -o wide >"$logs/cluster.txt" 2>&1 || true
  kubectl get mailroute -A -o yaml >"$logs/mailroute-objects.yaml" 2>&1 || true
  for pod in $(kubectl get pods -n "$ns" -o name 2>/dev/null); do
    kubectl logs -n "$ns" "$pod" --all-containers >"$logs/${pod#pod/}.log" 2>&1 || true
    kubectl logs -n "$ns" "$pod" --all-containers --previous >"$logs/${pod#pod/}.previous.log" 2>/dev/null || true
  done
  kubectl describe pods -n "$ns" >"$logs/pods-described.txt" 2>&1 || true
}
finish() {
  local status=$?
  [ "$status" -ne 0 ] && collect_logs
  if [ -z "${MAILROUTE_E2E_KEEP:-}" ]; then
    kubectl delete namespace -l mailroute.io/e2e=true --wait=false >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap finish EXIT

step "images"
images/build.sh "$tag"
# shellcheck disable=SC2086 # IMAGE_LOAD is a command line
$IMAGE_LOAD "mailroute-operator:$tag" "mailroute-relay:$tag" "mailroute-sink:$tag"

step "a release namespace that enforces the restricted Pod Security Standard"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$ns" --overwrite pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/warn=restricted >/dev/null

step "the relay's TLS certificate and a password Secret (submission and AUTH)"
certs=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mailroute-relay.$ns.svc.cluster.local" \
  -keyout "$certs/tls.key" -out "$certs/tls.crt" 2>/dev/null
kubectl -n "$ns" create secret tls relay-tls --cert "$certs/tls.crt" --key "$certs/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# alice's password is e2e-alice-password (the tests only ever guess wrong).
printf 'alice:%s\n' '$2b$10$l25kKxoY8oDi/Aj3G2IDi.HDXHY9tRCvxjMlDUAgkxwqftdwtQ68G' >"$certs/htpasswd"
kubectl -n "$ns" create secret generic e2e-smtp-users --type=mailroute.io/htpasswd \
  --from-file=htpasswd="$certs/htpasswd" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
rm -r "$certs"

step "helm install"
chart=(charts/mailroute -n "$ns"
  --set operator.image.repository=mailroute-operator --set "operator.image.tag=$tag"
  --set relay.image.repository=mailroute-relay --set "relay.image.tag=$tag"
  --set operator.image.pullPolicy=Never --set relay.image.pullPolicy=Never
  --set relay.tls.secretName=relay-tls --set relay.submission.enabled=true
  --set "relay.auth.passwordSecrets={e2e-smtp-users}" --set relay.auth.cacheSeconds=10)
installed=$SECONDS
"$HELM" install "$release" "${chart[@]}" --set relay.tableSource=watch --set relay.service.type=NodePort \
  --set "operator.extraSelfAddresses={$self_names}" --set operator.reportDeadlineSeconds=15 >/dev/null
kubectl -n "$ns" rollout status deploy/mailroute-operator --timeout=180s
figure "helm install -> operator pods Ready: $((SECONDS - installed)) s"

export MAILROUTE_E2E=cluster E2E_SELF="$self_names" E2E_RELEASE="$release" E2E_RELEASE_NAMESPACE="$ns" \
  E2E_RELAY_SERVICE=mailroute-relay E2E_OPERATOR_DEPLOYMENT=mailroute-operator \
  E2E_SINK_IMAGE="mailroute-sink:$tag" E2E_RELAY_IMAGE="mailroute-relay:$tag" E2E_CLIENT_IMAGE="${E2E_CLIENT_IMAGE:-local/tools:bookworm}" \
  E2E_CRICTL="${E2E_CRICTL:-crictl}" E2E_HELM="$HELM"
suite() { E2E_TABLE_SOURCE=$1 cargo test --locked -p e2e "${@:2}" -- --test-threads=1 --nocapture; }

step "the suite, against the in-cluster operator and relay (watch mode)"
suite watch

step "helm upgrade to a mounted table; the propagation figure and the RoutingTable again"
"$HELM" upgrade "$release" "${chart[@]}" --reset-then-reuse-values --set relay.tableSource=mount >/dev/null
kubectl -n "$ns" rollout status deploy/mailroute-relay --timeout=300s
suite mount --test in_cluster a_change_reaches_every_relay_pod
# Mounted relays report what they serve too.
suite mount --test propagation kubectl_wait_returns

step "helm upgrade back to watch"
"$HELM" upgrade "$release" "${chart[@]}" --reset-then-reuse-values --set relay.tableSource=watch >/dev/null
kubectl -n "$ns" rollout status deploy/mailroute-relay --timeout=300s
suite watch --test in_cluster mail_from_a_client_pod

step "helm uninstall leaves nothing behind but the CRDs and the users' objects"
users_kinds=addressspaces,recipientpolicies,mailcontacts,smtpconnectors,sendinggrants
objects_before=$(kubectl get "$users_kinds" -n "$ns" -o name | sort)
"$HELM" uninstall "$release" -n "$ns" --wait --timeout 300s
kubectl -n "$ns" wait --for=delete pod -l "app.kubernetes.io/instance=$release" --timeout=180s
left=$(
  kubectl get deploy,rs,pod,svc,cm,secret,sa,role,rolebinding,pdb,hpa,networkpolicy,job \
    -n "$ns" -l "app.kubernetes.io/instance=$release" -o name
  kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=$release" -o name
  kubectl get cm,routingtables -A -l app.kubernetes.io/managed-by=mailroute -o name
  kubectl get lease -n "$ns" mailroute-operator -o name --ignore-not-found
)
if [ -n "$left" ]; then
  echo "left behind after helm uninstall:"
  echo "$left"
  exit 1
fi
kubectl get crd addressspaces.mailroute.io recipientpolicies.mailroute.io \
  mailcontacts.mailroute.io smtpconnectors.mailroute.io sendinggrants.mailroute.io \
  routingtables.mailroute.io >/dev/null
objects_after=$(kubectl get "$users_kinds" -n "$ns" -o name | sort)
[ "$objects_before" = "$objects_after" ] || { echo "the users' objects changed"; exit 1; }
echo "the table ConfigMaps, the RoutingTable and the Lease are gone (the uninstall hook ran); the CRDs and $(echo "$objects_after" | wc -l) objects stay"
kubectl delete mailroute --all -n "$ns" >/dev/null
step "cluster e2e passed"
echo "== figures"
cat "$E2E_FIGURES"
