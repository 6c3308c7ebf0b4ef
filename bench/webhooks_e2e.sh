#!/usr/bin/env bash
# Webhook delivery end to end on SQLite (issue: webhooks). Events are real key.created events from
# POST /v1/keys (outbox row written in the key's transaction); a local Node receiver answers 200 and
# measures commit → receipt from the millisecond timestamp inside each event id.
#   sustained: with delivery off (webhooks.deliver = false), keys are created as fast as 32 connections
#              allow for DURATION s (a backlog of pending deliveries); then the server restarts with
#              delivery on and the receiver measures the drain rate — the worker alone, not key creation;
#   paced:     keys created at 500/s for DURATION s; p50/p99 commit → receipt.
# ROUNDS rounds, medians. Usage: bash bench/webhooks_e2e.sh [DURATION_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
cargo build -q --release -p gatehouse
BIN=$PWD/target/release/gatehouse
WORK=$(mktemp -d)
OUT=bench/results/webhooks_e2e-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
base=$((20000 + RANDOM % 20000)); CP=$base; RCV=$((base + 1))
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/gatehouse.toml" <<CFG
listen = "127.0.0.1:$CP"
data_dir = "$WORK/data"
log_level = "warn"
[webhooks]
allow_private_destinations = true
CFG
PORT=$RCV node bench/webhooks/receiver.mjs & PIDS+=($!)
KEY=$("$BIN" --config "$WORK/gatehouse.toml" keys create --name bench --rate-limit 10000000/1s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
"$BIN" --config "$WORK/gatehouse.toml" webhooks endpoints create --url "http://127.0.0.1:$RCV/hooks" --event key.created --json > /dev/null
start() { # deliver=true|false
  GATEHOUSE_WEBHOOKS__DELIVER=$1 "$BIN" --config "$WORK/gatehouse.toml" serve >> "$WORK/serve.log" 2>&1 & SERVER=$!; PIDS+=($SERVER)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$CP/healthz" >/dev/null && return; sleep 0.1; done
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }
echo "# webhooks_e2e duration=${DURATION}s rounds=$ROUNDS $(nproc) cpus" | tee "$OUT"
drain() { # waits until the receiver has everything the loader created
  local want=$1
  for _ in $(seq 1 600); do
    got=$(curl -s "http://127.0.0.1:$RCV/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
    [ "$got" -ge "$want" ] && return; sleep 0.1
  done
  echo "receiver got $got of $want" >&2; exit 1
}
for r in $(seq 1 "$ROUNDS"); do
  start false
  LOAD=$(URL="http://127.0.0.1:$CP" KEY=$KEY RATE=0 SECS=$DURATION node bench/webhooks/load.mjs)
  OKS=$(echo "$LOAD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')
  stop
  curl -s "http://127.0.0.1:$RCV/stats?reset=1" > /dev/null
  start true
  drain "$OKS"
  echo "sustained round=$r created=$OKS $(curl -s "http://127.0.0.1:$RCV/stats")" | tee -a "$OUT"
  curl -s "http://127.0.0.1:$RCV/stats?reset=1" > /dev/null
  LOAD=$(URL="http://127.0.0.1:$CP" KEY=$KEY RATE=500 SECS=$DURATION node bench/webhooks/load.mjs)
  OKS=$(echo "$LOAD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')
  drain "$OKS"
  echo "paced500 round=$r created=$OKS $(curl -s "http://127.0.0.1:$RCV/stats")" | tee -a "$OUT"
  stop
done
python3 - "$OUT" <<'PY' | tee -a "$OUT"
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'(\w+) round=\d+ created=(\d+) (\{.*\})', line)
    if m:
        rows.setdefault(m[1], []).append(json.loads(m[3]))
s, p = rows["sustained"], rows["paced500"]
print(f"median sustained delivery rate (backlog drain) {statistics.median(x['rate'] for x in s):.0f} events/s")
print(f"median at 500 events/s: p50 {statistics.median(x['p50_ms'] for x in p)} ms, p99 {statistics.median(x['p99_ms'] for x in p)} ms commit->receipt")
PY
echo "results in $OUT"
