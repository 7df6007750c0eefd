#!/usr/bin/env bash
# The submission benchmark (issue 20): messages per second through one
# release relay, every message on a new connection with STARTTLS, 1 KB, one
# recipient, to a local sink; interleaved in one run:
#   plain     port 25, no AUTH (the client is in the relay networks)
#   password  port 587, AUTH PLAIN as a password user of a SendingGrant
#   token     port 587, AUTH PLAIN with a ServiceAccount token, checked by
#             TokenReview against the API server KUBECONFIG names (only
#             when one answers: ../shared/kube/up.sh api gives one); then
#             a token for another audience must get 535
# Medians of REPS; for the token mode, the TokenReviews the relay made
# (mailroute_relay_token_reviews_total: one per token per cache lifetime).
#
# Usage: bench/submission.sh       (REPS=3 MSGS=4000 SESSIONS=20)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
MSGS=${MSGS:-4000}
SESSIONS=${SESSIONS:-20}
if [ "${MAILROUTE_SMOKE:-0}" = 1 ]; then
  echo "(smoke run: REPS=1 MSGS=200)"
  REPS=1 MSGS=200
fi
read -r SINK SMTP SUBMISSION METRICS < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
TARGET=$(tools/target-dir)
WORK=$(mktemp -d -t mailroute-submission.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build -q --release --locked -p relay --bin mailroute-relay --example sink --example submit_bench
cargo build -q --locked --bin mailroute
"$TARGET/release/examples/sink" partner "127.0.0.1:$SINK" >/dev/null 2>&1 &
pids+=($!)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=relay.bench \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
mkdir -p "$WORK/passwords/users"
echo 'bench password' | "$TARGET/debug/mailroute" htpasswd app >"$WORK/passwords/users/htpasswd"

token=
if [ -n "${KUBECONFIG:-}" ] && kubectl get --raw /readyz >/dev/null 2>&1; then
  ns=mailroute-bench-$$
  kubectl create namespace "$ns" >/dev/null
  kubectl -n "$ns" create serviceaccount app >/dev/null
  trap 'kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; cleanup' EXIT
  token=$(kubectl -n "$ns" create token app --audience mailroute --duration 1h) ||
    { echo "(no token from the API server: token mode skipped)"; token=; }
else
  echo "(no API server at KUBECONFIG: token mode skipped)"
fi
cat >"$WORK/mail.yaml" <<EOF
apiVersion: mailroute.io/v1alpha1
kind: AddressSpace
metadata: {name: example-com}
spec: {domain: example.com, type: Authoritative}
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {name: partner}
spec:
  addressSpaces: [{domain: partner.example}]
  smartHosts: ["[127.0.0.1]:$SINK"]
---
apiVersion: mailroute.io/v1alpha1
kind: SendingGrant
metadata: {name: app}
spec:
  principals: [{passwordSecret: {name: users}}, {serviceAccount: {namespace: ${ns:-none}, name: app}}]
  relayDomains: [partner.example]
  senders: [app@example.com]
EOF
args=(--listen "127.0.0.1:$SMTP" --submission-listen "127.0.0.1:$SUBMISSION"
  --metrics-listen "127.0.0.1:$METRICS" --hostname relay.bench --relay-networks 127.0.0.0/8
  --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" --passwords-dir "$WORK/passwords"
  --manifests "$WORK/mail.yaml" --max-connections-per-client 1000)
[ -n "$token" ] && args+=(--token-review)
MAILROUTE_LOG=warn "$TARGET/release/mailroute-relay" "${args[@]}" >"$WORK/relay.log" 2>&1 &
pids+=($!)
until curl -fs "127.0.0.1:$METRICS/readyz" >/dev/null; do sleep 0.2; done

modes=(plain password)
[ -n "$token" ] && modes+=(token)
declare -A results
for rep in $(seq "$REPS"); do
  for mode in "${modes[@]}"; do
    case $mode in
      plain) r=$("$TARGET/release/examples/submit_bench" "127.0.0.1:$SMTP" "$MSGS" "$SESSIONS") ;;
      password) r=$("$TARGET/release/examples/submit_bench" "127.0.0.1:$SUBMISSION" "$MSGS" "$SESSIONS" app 'bench password') ;;
      token) r=$("$TARGET/release/examples/submit_bench" "127.0.0.1:$SUBMISSION" "$MSGS" "$SESSIONS" app "$token") ;;
    esac
    results[$mode]+="$r "
    echo "rep $rep $mode: $r msg/s"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
plain=$(echo "${results[plain]}" | median)
for mode in "${modes[@]}"; do
  m=$(echo "${results[$mode]}" | median)
  echo "$mode: median $m msg/s ($(python3 -c "print(f'{$m / $plain:.2f}')") of plain)"
done
if [ -n "$token" ]; then
  reviews=$(curl -fs "127.0.0.1:$METRICS/metrics" | awk '/^mailroute_relay_token_reviews_total/ {print $2}')
  echo "token reviews: $reviews for $((REPS * MSGS)) token logins (one token, cache lifetime 60 s)"
  # And what must not log in: a token of the same ServiceAccount for
  # another audience (the API server's, say) is refused.
  other=$(kubectl -n "$ns" create token app --audience other --duration 1h)
  if "$TARGET/release/examples/submit_bench" "127.0.0.1:$SUBMISSION" 1 1 app "$other" 2>"$WORK/other.log"; then
    echo "a token for another audience logged in" >&2
    exit 1
  fi
  grep -q "535 5.7.8" "$WORK/other.log" || { cat "$WORK/other.log" >&2; exit 1; }
  echo "a token for another audience: 535 5.7.8"
fi
