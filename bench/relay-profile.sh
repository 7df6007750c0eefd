#!/usr/bin/env bash
# Where the relay's CPU goes per message (issue 22): Postfix's smtp-source
# (20 sessions, a connection per message, one recipient) sends through the
# release relay to Postfix's smtp-sink while `perf record` samples the
# relay; prints the share of samples in the kernel and in user space, the
# top entries by self time, and the system calls per message (counted by
# strace on a separate, short run: strace slows what it counts).
#
# Needs: postfix (smtp-source, smtp-sink), linux-perf, strace, python3.
# Usage: bench/relay-profile.sh [SIZE]     (SIZE in bytes, 1024 by default;
#        MSGS=20000 messages under perf, TOP=25 entries, RELAY_ARGS: more
#        options for the relay, e.g. "--worker-threads 1"; RELAY_BIN: another
#        build of mailroute-relay to profile, e.g. the one before a change)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
MSGS=${MSGS:-20000}
TOP=${TOP:-25}
if [ "${MAILROUTE_SMOKE:-0}" = 1 ]; then
  echo "(smoke run: MSGS=500)"
  MSGS=500
fi
for tool in smtp-source smtp-sink perf strace python3; do
  command -v "$tool" >/dev/null || { echo "bench/relay-profile.sh needs $tool (apt-get install postfix linux-perf strace python3)" >&2; exit 2; }
done
read -r SINK RELAY METRICS < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
TARGET=$(tools/target-dir)
WORK=$(mktemp -d -t mailroute-profile.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release --locked -q -p relay -p operator
cat > "$WORK/bench.yaml" <<YAML
apiVersion: mailroute.io/v1alpha1
kind: AddressSpace
metadata: {name: example-com}
spec: {domain: example.com, type: Authoritative}
---
apiVersion: mailroute.io/v1alpha1
kind: MailContact
metadata: {name: bench-rcpt}
spec:
  proxyAddresses: ["rcpt@example.com"]
  targetAddress: rcpt@sink.test
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {name: bench-sink}
spec:
  addressSpaces: [{domain: sink.test}]
  smartHosts: ["[127.0.0.1]:$SINK"]
  tls: {mode: None}
YAML
"$TARGET/release/mailroute" compile -f "$WORK/bench.yaml" -o "$WORK/table" >/dev/null

sink_user=(); [ "$(id -u)" = 0 ] && sink_user=(-u nobody)
read -r -a relay_args <<<"${RELAY_ARGS:-}"
smtp-sink "${sink_user[@]}" 127.0.0.1:$SINK 1024 & pids+=($!)
"${RELAY_BIN:-$TARGET/release/mailroute-relay}" --listen 127.0.0.1:$RELAY --metrics-listen 127.0.0.1:$METRICS \
  --hostname relay.bench --relay-networks 127.0.0.0/8 --table "$WORK/table" \
  --max-connections-per-client 1000 "${relay_args[@]}" >"$WORK/relay.log" 2>&1 & RELAY_PID=$!; pids+=("$RELAY_PID")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$METRICS/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

send() { smtp-source -s 20 -m "$1" -l "$SIZE" -f s@x.test -t rcpt@example.com 127.0.0.1:"$RELAY"; }
send 2000 # warm up: the next hop's pooled connections

echo "== perf record: $MSGS messages of $SIZE bytes"
perf record -q -F 2000 -e cpu-clock -p "$RELAY_PID" -o "$WORK/perf.data" 2>/dev/null & PERF=$!
sleep 0.5
start=$(date +%s.%N)
send "$MSGS"
end=$(date +%s.%N)
kill -INT "$PERF"; wait "$PERF" || true
python3 -c "print(f'{$MSGS / ($end - $start):.0f} msg/s under perf')"
perf report -i "$WORK/perf.data" --no-children --sort dso -q 2>/dev/null | awk 'NF && n++ < 8 {print "  " $0}'
echo "-- top $TOP by self time"
perf report -i "$WORK/perf.data" --no-children --sort sym -q 2>/dev/null | awk -v top="$TOP" 'NF && n++ < top'

echo "== system calls per message (strace, 500 messages)"
strace -f -c -o "$WORK/strace.txt" -p "$RELAY_PID" & STRACE=$!
sleep 1
send 500
sleep 0.5
kill -INT "$STRACE"; wait "$STRACE" || true
python3 - "$WORK/strace.txt" 500 <<'PYEOF'
import sys
rows, total = [], 0
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls = int(f[3])
        rows.append((calls, f[-1]))
        total += calls
n = int(sys.argv[2])
print(f"  {total / n:.1f} system calls per message")
for calls, name in sorted(rows, reverse=True)[:10]:
    print(f"  {calls / n:6.2f} {name}")
PYEOF
