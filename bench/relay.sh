#!/usr/bin/env bash
# The relay's throughput benchmark (issue 3): Postfix's smtp-source sends
# through three paths to Postfix's smtp-sink, interleaved, in one run:
#   direct   smtp-source -> smtp-sink            (the machine's limit)
#   relay    smtp-source -> mailroute-relay -> smtp-sink
#   postfix  smtp-source -> Postfix (virtual_alias_maps + transport_maps) -> smtp-sink
# for 1 KB and 100 KB messages with 1 and 5 recipients (one next hop), and
# 5 recipients over two next hops (split@…: 3 to one smtp-sink, 2 to
# another; Postfix routes them the same way), 20 sessions, a new connection
# per message; medians of REPS repetitions. The relay runs with a
# 100k-contact table (plus the bench's recipients); its resident memory and
# the added median latency are measured too.
#
# Needs: postfix (smtp-source, smtp-sink, a Postfix to compare), python3.
# Usage: bench/relay.sh            (REPS=3 MSGS=20000 MSGS_LARGE=4000)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
MSGS=${MSGS:-20000}
MSGS_LARGE=${MSGS_LARGE:-4000}
SESSIONS=20
CONTACTS=${CONTACTS:-100000}
if [ "${MAILROUTE_SMOKE:-0}" = 1 ]; then
  # The docs check proves the command works, in seconds.
  echo "(smoke run: REPS=1 MSGS=200 MSGS_LARGE=40 CONTACTS=1000)"
  REPS=1 MSGS=200 MSGS_LARGE=40 CONTACTS=1000
fi
# Free loopback ports, and cargo's own target directory.
read -r SINK SINK2 RELAY POSTFIX METRICS < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
TARGET=$(tools/target-dir)
WORK=$(mktemp -d -t mailroute-bench.XXXXXX)
chmod 755 "$WORK"
for tool in smtp-source smtp-sink postfix postmap python3; do
  command -v "$tool" >/dev/null || { echo "bench/relay.sh needs $tool (apt-get install postfix python3)" >&2; exit 2; }
done

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  postfix -c "$WORK/pf/conf" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release --locked -q -p relay -p operator
cargo build --release --locked -q -p routing --example scale

# split@ … 5split@: 2split and 4split live behind the second next hop.
next_hop() { case $1 in 2split|4split) echo sink2.test ;; *) echo sink.test ;; esac; }

echo "== the table: $CONTACTS contacts plus the bench recipients"
"$TARGET/release/examples/scale" "$CONTACTS" --yaml "$WORK/org" >/dev/null
{
  for local in rcpt 2rcpt 3rcpt 4rcpt 5rcpt split 2split 3split 4split 5split; do
    cat <<YAML
---
apiVersion: mailroute.io/v1alpha1
kind: MailContact
metadata: {name: bench-$local}
spec:
  proxyAddresses: ["$local@example.com"]
  targetAddress: $local@$(next_hop "$local")
YAML
  done
  for n in "" 2; do
    port=SINK$n
    cat <<YAML
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {name: bench-sink$n}
spec:
  addressSpaces: [{domain: sink$n.test}]
  smartHosts: ["[127.0.0.1]:${!port}"]
  tls: {mode: None}
YAML
  done
} > "$WORK/bench.yaml"
"$TARGET/release/mailroute" compile -f "$WORK/org" -f "$WORK/bench.yaml" -o "$WORK/table" >/dev/null 2>&1
rm -rf "$WORK/org"

echo "== smtp-sink on :$SINK and :$SINK2"
sink_user=(); [ "$(id -u)" = 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" 127.0.0.1:$SINK 1024 & pids+=($!)
smtp-sink "${sink_user[@]}" 127.0.0.1:$SINK2 1024 & pids+=($!)

echo "== mailroute-relay on :$RELAY"
"$TARGET/release/mailroute-relay" --listen 127.0.0.1:$RELAY --metrics-listen 127.0.0.1:$METRICS \
  --hostname relay.bench --relay-networks 127.0.0.0/8 --table "$WORK/table" \
  --max-connections-per-client 1000 >"$WORK/relay.log" 2>&1 & RELAY_PID=$!; pids+=("$RELAY_PID")

echo "== Postfix on :$POSTFIX (its default settings, virtual_alias_maps + transport_maps)"
mkdir -p "$WORK/pf/conf" "$WORK/pf/queue" "$WORK/pf/data"
chown postfix "$WORK/pf/data"
cat > "$WORK/pf/conf/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $WORK/pf/queue
data_directory = $WORK/pf/data
maillog_file_prefixes = $WORK
maillog_file = $WORK/pf/maillog
myhostname = postfix.bench
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_alias_domains = example.com
virtual_alias_maps = hash:$WORK/pf/conf/virtual
transport_maps = hash:$WORK/pf/conf/transport
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
CF
for local in rcpt 2rcpt 3rcpt 4rcpt 5rcpt split 2split 3split 4split 5split; do
  echo "$local@example.com $local@$(next_hop "$local")"
done > "$WORK/pf/conf/virtual"
printf 'sink.test smtp:[127.0.0.1]:%s\nsink2.test smtp:[127.0.0.1]:%s\n' "$SINK" "$SINK2" > "$WORK/pf/conf/transport"
postmap -c "$WORK/pf/conf" "$WORK/pf/conf/virtual"; postmap -c "$WORK/pf/conf" "$WORK/pf/conf/transport"
cat > "$WORK/pf/conf/master.cf" <<CF
127.0.0.1:$POSTFIX inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
CF
if ! postfix -c "$WORK/pf/conf" start >"$WORK/pf-start.log" 2>&1; then
  # Say why (a port taken meanwhile, a configuration error), not just exit.
  echo "bench/relay.sh: Postfix did not start:" >&2
  cat "$WORK/pf-start.log" >&2
  postfix -c "$WORK/pf/conf" check >&2 || true
  tail -20 "$WORK"/pf/maillog* >&2 2>/dev/null || true
  exit 1
fi

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not listening" >&2; exit 1; }
wait_port $SINK; wait_port $SINK2; wait_port $RELAY; wait_port $POSTFIX
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$METRICS/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

queue_empty() { [ -z "$(find "$WORK/pf/queue/incoming" "$WORK/pf/queue/active" "$WORK/pf/queue/deferred" "$WORK/pf/queue/maildrop" -type f 2>/dev/null | head -1)" ]; }

# One run; prints messages per second. Postfix queues, so its run ends when
# its queue is empty, not when smtp-source is done.
run() { # path port size rcpts msgs [first recipient]
  local start end
  start=$(date +%s.%N)
  smtp-source -s $SESSIONS -m "$5" -l "$3" -r "$4" -f s@x.test -t "${6:-rcpt}@example.com" 127.0.0.1:"$2"
  if [ "$1" = postfix ]; then
    for _ in $(seq 6000); do queue_empty && break; sleep 0.01; done
    queue_empty || { echo "Postfix did not deliver everything; see $WORK/pf/maillog" >&2; exit 1; }
  fi
  end=$(date +%s.%N)
  python3 -c "print(round($5 / ($end - $start)))"
}

declare -A results
# size, recipients, messages, first recipient (split: over two next hops)
cases=("1024 1 $MSGS rcpt" "1024 5 $MSGS rcpt" "1024 5 $MSGS split" "102400 1 $MSGS_LARGE rcpt" "102400 5 $MSGS_LARGE rcpt" "102400 5 $MSGS_LARGE split")
paths=("direct $SINK" "relay $RELAY" "postfix $POSTFIX")
# Warm up every path (Postfix's destination concurrency, caches).
for p in "${paths[@]}"; do set -- $p; run "$1" "$2" 1024 1 2000 >/dev/null; done
for rep in $(seq "$REPS"); do
  for c in "${cases[@]}"; do
    set -- $c; size=$1 rcpts=$2 msgs=$3 first=$4
    for p in "${paths[@]}"; do
      set -- $p
      r=$(run "$1" "$2" "$size" "$rcpts" "$msgs" "$first")
      results["$1 $size $rcpts $first"]+="$r "
      echo "rep $rep: $1 ${size}B x$rcpts rcpt ($first): $r msg/s"
    done
  done
done

median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "== latency: sequential 1 KB messages, one connection each (python smtplib)"
lat_direct=$(python3 bench/latency.py 127.0.0.1:$SINK 500 1024)
lat_relay=$(python3 bench/latency.py 127.0.0.1:$RELAY 500 1024)
lat_direct2=$(python3 bench/latency.py 127.0.0.1:$SINK 500 1024)
lat_relay2=$(python3 bench/latency.py 127.0.0.1:$RELAY 500 1024)
read -r d1 _ <<<"$lat_direct"; read -r r1 _ <<<"$lat_relay"; read -r d2 _ <<<"$lat_direct2"; read -r r2 _ <<<"$lat_relay2"
added=$(python3 -c "print(f'{(($r1 - $d1) + ($r2 - $d2)) / 2:.3f}')")
echo "median ms: direct $d1 / $d2, relay $r1 / $r2 -> added $added ms"

rss=$(awk '/VmRSS/ {print $2}' /proc/$RELAY_PID/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$RELAY_PID/status)
echo
echo "== results ($(date -u +%F), $(nproc) cores, medians of $REPS, $SESSIONS sessions)"
echo "| message | rcpts | next hops | direct msg/s | relay msg/s | relay/direct | Postfix msg/s | relay/Postfix (rcpt deliveries/s: relay, Postfix) |"
echo "|---|---|---|---|---|---|---|---|"
for c in "${cases[@]}"; do
  set -- $c
  key="$1 $2 $4"; hops=1; [ "$4" = split ] && hops=2
  d=$(median "${results["direct $key"]}"); r=$(median "${results["relay $key"]}"); p=$(median "${results["postfix $key"]}")
  python3 -c "print(f'| {$1 // 1024} KB | $2 | $hops | $d | $r | {$r / $d:.0%} | $p | {$r / $p:.1f}x ({$r * $2}, {$p * $2}) |')"
done
for size in 1024 102400; do
  one=$(median "${results["relay $size 5 rcpt"]}"); two=$(median "${results["relay $size 5 split"]}")
  python3 -c "print(f'relay, {$size // 1024} KB, 5 recipients over two next hops: {$two / $one:.0%} of the same over one')"
done
echo
echo "relay added median latency: $added ms; relay RSS now $((rss / 1024)) MiB, peak $((hwm / 1024)) MiB with a $CONTACTS-contact table"
