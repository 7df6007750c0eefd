#!/usr/bin/env bash
# The local demo: a relay on 127.0.0.1:2525 routing one of the examples to
# local SMTP sinks that stand in for its smart hosts (the examples name
# 10.x servers). Sends a message to every address the scenario lists, one in
# each connector's address space, one in each alias domain and one that does
# not exist, and shows where each went. Needs only cargo and a C compiler.
#
#   bash examples/demo.sh [SCENARIO.yaml]      default: examples/1-alias-table.yaml
#   KEEP=1 bash examples/demo.sh ...           leave the relay and sinks running
#   PORT=2525 METRICS_PORT=9090 SINK_PORT=2601 the ports it uses (these defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:-examples/1-alias-table.yaml}
KEEP=${KEEP:-0} PORT=${PORT:-2525} METRICS_PORT=${METRICS_PORT:-9090} SINK_PORT=${SINK_PORT:-2601}
[ -f "$SCENARIO" ] || { echo "demo: no such file: $SCENARIO" >&2; exit 2; }
WORK=$(mktemp -d -t mailroute-demo.XXXXXX)
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap stop EXIT

# up PID LOG WHAT CHECK...: waits until CHECK succeeds; if the process ends
# first, shows its own words and stops the demo.
up() {
  local pid=$1 log=$2 what=$3
  shift 3
  for _ in $(seq 100); do
    "$@" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: $what did not start:" >&2
      sed 's/^/  /' "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "demo: $what did not become ready in 10 s; its log:" >&2
  sed 's/^/  /' "$log" >&2
  exit 1
}
ready() { # the relay's /readyz answers 200
  { exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"; } 2>/dev/null || return 1
  printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
  head -n1 <&3 | grep -q ' 200 '
  local ok=$?
  exec 3<&-
  return $ok
}

echo "== building mailroute-relay, the demo's sink and sender (release; the first build takes about 5 minutes on 2 cores)"
cargo build --release --locked -p relay --bin mailroute-relay --example sink --example demo_send
release=$(tools/target-dir)/release

echo "== one local sink per smart host of $SCENARIO (each offers STARTTLS with a throw-away certificate)"
text=$(<"$SCENARIO")
port=$SINK_PORT
sinks=()
while read -r quoted; do
  [ -n "$quoted" ] || continue
  host=${quoted:1:${#quoted}-2}
  text=${text//"$quoted"/"\"[127.0.0.1]:$port\""}
  "$release/examples/sink" "$host" "127.0.0.1:$port" >"$WORK/sink-$port.log" 2>&1 &
  pids+=($!)
  up $! "$WORK/sink-$port.log" "the sink for $host on 127.0.0.1:$port" grep -q listening "$WORK/sink-$port.log"
  echo "  $host -> 127.0.0.1:$port"
  sinks+=("$WORK/sink-$port.log")
  port=$((port + 1))
done < <(grep -o "[\"'][[][^]\"']*[]]\(:[0-9]*\)\?[\"']" "$SCENARIO" | sort -u)
printf '%s\n' "$text" >"$WORK/scenario.yaml"

echo "== mailroute-relay --listen 127.0.0.1:$PORT --metrics-listen 127.0.0.1:$METRICS_PORT --hostname relay.demo --manifests <the scenario, smart hosts replaced>"
"$release/mailroute-relay" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --hostname relay.demo --manifests "$WORK/scenario.yaml" >"$WORK/relay.log" 2>&1 &
pids+=($!)
up $! "$WORK/relay.log" mailroute-relay ready

echo "== sending"
"$release/examples/demo_send" "127.0.0.1:$PORT" "$SCENARIO" | tee "$WORK/sent"
accepted=$(grep -c ': accepted$' "$WORK/sent" || true)

echo "== where each message went"
for _ in $(seq 50); do
  [ "$(cat /dev/null "${sinks[@]}" | grep -c ': from <' || true)" -ge "$accepted" ] && break
  sleep 0.1
done
for log in "${sinks[@]}"; do grep ': from <' "$log" || true; done

if [ "$KEEP" = 1 ]; then
  echo "== the relay is still running on 127.0.0.1:$PORT (try: swaks --server 127.0.0.1:$PORT --to <an address above>); Ctrl-C stops it"
  wait
fi
