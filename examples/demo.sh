#!/usr/bin/env bash
# The local demo: a relay on 127.0.0.1:2525 routing one of the examples to
# local sinks that stand in for its smart hosts (the examples name 10.x
# servers). Sends a message to every address the scenario lists, one in each
# connector's address space, and one that does not exist, and shows where
# each went.
#
#   bash examples/demo.sh [examples/1-alias-table.yaml]     (needs cargo, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:-examples/1-alias-table.yaml}
KEEP=${KEEP:-0}
WORK=$(mktemp -d /tmp/mailroute-demo.XXXXXX)
pids=()
# shellcheck disable=SC2154 # p is the loop variable inside the trap string
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

echo "== building"
cargo build -q --release -p relay --bin mailroute-relay --example sink

echo "== one local sink per smart host of $SCENARIO"
# Each distinct smart host becomes [127.0.0.1]:PORT in a copy of the file.
python3 - "$SCENARIO" "$WORK" <<'PY' > "$WORK/sinks"
import re, sys
text = open(sys.argv[1]).read()
hosts = sorted(set(re.findall(r'"(\[[^\]]+\](?::\d+)?)"', text)))
for i, host in enumerate(hosts):
    port = 2601 + i
    text = text.replace(f'"{host}"', f'"[127.0.0.1]:{port}"')
    print(host, port)
open(sys.argv[2] + "/scenario.yaml", "w").write(text)
PY
while read -r host port; do
  ./target/release/examples/sink "$host" 127.0.0.1:"$port" & pids+=($!)
done < "$WORK/sinks"

echo "== mailroute-relay on 127.0.0.1:2525 (metrics on 127.0.0.1:9090)"
./target/release/mailroute-relay --listen 127.0.0.1:2525 --metrics-listen 127.0.0.1:9090 \
  --hostname relay.demo --manifests "$WORK/scenario.yaml" >"$WORK/relay.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.1; done

echo "== sending"
python3 - "$SCENARIO" <<'PY'
import re, smtplib, sys
text = open(sys.argv[1]).read()
addresses = []
for group in re.findall(r'proxyAddresses:\s*\[([^\]]*)\]', text):
    addresses += [a.strip() for a in group.split(',') if a.strip()]
# One address in each connector address space (a wildcard gets "sub."; "*"
# would go to the Internet by MX, so it is left out).
for domain in re.findall(r'\{domain:\s*"?([^",}\s]+)"?', text):
    if domain != "*":
        addresses.append("x@" + domain.replace("*.", "sub."))
domains = re.findall(r'domain:\s*([a-z0-9.-]+)\s*\n\s*type:\s*Authoritative', text)
if domains:
    addresses.append(f"nobody@{domains[0]}")
for rcpt in dict.fromkeys(addresses):
    s = smtplib.SMTP("127.0.0.1", 2525)
    try:
        s.sendmail("demo@client.test", [rcpt], f"Subject: demo for {rcpt}\r\n\r\nHello.\r\n")
        print(f"  {rcpt}: accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code, msg = e.recipients[rcpt]
        print(f"  {rcpt}: refused {code} {msg.decode()}")
    except smtplib.SMTPResponseException as e:
        print(f"  {rcpt}: {e.smtp_code} {e.smtp_error.decode()}")
    finally:
        s.quit()
PY
sleep 0.5
echo "== (the sinks' lines above show where each message went)"
if [ "$KEEP" = 1 ]; then
  echo "relay still running on 127.0.0.1:2525; Ctrl-C to stop"
  wait
fi
