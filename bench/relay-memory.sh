#!/usr/bin/env bash
# The relay's resident memory in watch mode (`--configmap`), with a large
# table reloaded again and again (issue 14): a table of CONTACTS contacts
# is published as the operator's ConfigMaps into a throw-away namespace of
# the cluster KUBECONFIG points at (an API server is enough), a release
# mailroute-relay watches it, and the table is changed RELOADS times (one
# contact moved and back). Prints the relay's resident memory after the
# first load and after the reloads, and its peak (VmHWM), in MiB.
#
# Needs: kubectl and a reachable API server with no mailroute operator
# running (the kit's `up.sh api` will do): an operator deletes ConfigMaps
# labelled as its own in a namespace without mailroute objects.
# Usage: bench/relay-memory.sh          (CONTACTS=100000 RELOADS=6)
set -euo pipefail
cd "$(dirname "$0")/.."
CONTACTS=${CONTACTS:-100000}
RELOADS=${RELOADS:-6}
if [ "${MAILROUTE_SMOKE:-0}" = 1 ]; then
  echo "(smoke run: CONTACTS=2000 RELOADS=2)"
  CONTACTS=2000 RELOADS=2
fi
kubectl version >/dev/null 2>&1 || { echo "bench/relay-memory.sh: no reachable API server (KUBECONFIG)" >&2; exit 2; }
if [ -n "$(kubectl get pods -A -l app.kubernetes.io/name=mailroute,app.kubernetes.io/component=operator -o name 2>/dev/null)" ]; then
  echo "bench/relay-memory.sh: a mailroute operator runs on this cluster and would delete the bench's table" >&2
  echo "  (ConfigMaps labelled as its own, in a namespace without mailroute objects): use an API server without one" >&2
  exit 2
fi
ns=mailroute-memory-bench
WORK=$(mktemp -d -t mailroute-memory.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release --locked -q -p relay -p operator
cargo build --release --locked -q -p routing --example scale
release=$(tools/target-dir)/release

echo "== two tables of $CONTACTS contacts, one contact apart"
"$release/examples/scale" "$CONTACTS" --yaml "$WORK/a" >/dev/null
mkdir "$WORK/b"
# The first contact's target, moved.
sed '0,/targetAddress: "/s//targetAddress: "moved-/' "$WORK/a/organisation.yaml" >"$WORK/b/organisation.yaml"
for t in a b; do
  "$release/mailroute" compile -f "$WORK/$t" -o "$WORK/table-$t" >/dev/null
done

# The ConfigMaps as the operator lays them out (routing/src/table/configmaps.rs).
publish() {
  local dir=$1 n=0 f
  for f in "$dir"/addresses-*; do
    kubectl create configmap "mailroute-table-shard-$(printf %03d $n)" -n "$ns" --from-file="$f" \
      --dry-run=client -o yaml | apply
    n=$((n + 1))
  done
  kubectl create configmap mailroute-table -n "$ns" --from-file="$dir/manifest.json" \
    --from-file="$dir/base.zst" --dry-run=client -o yaml | apply
}
apply() {
  kubectl label --local -f - -o yaml app.kubernetes.io/managed-by=mailroute mailroute.io/table=mailroute-table |
    kubectl apply --server-side --field-manager=mailroute-memory-bench -f - >/dev/null
}
kubectl create namespace "$ns" >/dev/null
publish "$WORK/table-a"

"$release/mailroute-relay" --configmap mailroute-table --namespace "$ns" \
  --listen 127.0.0.1:22531 --metrics-listen 127.0.0.1:22532 --hostname memory.bench.test \
  >"$WORK/relay.log" 2>&1 &
pid=$!
loaded() { curl -s 127.0.0.1:22532/metrics | awk '/^mailroute_relay_table_reloads\{outcome="ok"\}/{print $2}'; }
wait_loads() {
  for _ in $(seq 600); do
    [ "$(loaded)" = "$1" ] && return 0
    sleep 0.1
  done
  echo "the relay did not load table $1 (did something delete the bench's ConfigMaps?):" >&2
  cat "$WORK/relay.log" >&2
  exit 1
}
mib() { awk -v k="$1:" '$1 == k {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
wait_loads 1
sleep 1
echo "after the first load: $(mib VmRSS) MiB resident (peak $(mib VmHWM) MiB)"
for i in $(seq "$RELOADS"); do
  if [ $((i % 2)) = 1 ]; then publish "$WORK/table-b"; else publish "$WORK/table-a"; fi
  wait_loads $((i + 1))
done
sleep 1
echo "after $RELOADS reloads: $(mib VmRSS) MiB resident (peak $(mib VmHWM) MiB)"
