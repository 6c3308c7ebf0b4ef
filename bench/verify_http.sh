#!/usr/bin/env bash
# HTTP benchmark of POST /v1/keys/verify with wrk, with 1,000 and 1,000,000 keys stored (SQLite),
# against GET /healthz on the same server in the same run as the baseline. Three rounds each; medians.
# Usage: bash bench/verify_http.sh [DURATION_SECS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build -q --release -p gatehouse
cargo build -q --release -p gatehouse-store --features testing --example seed_keys
BIN=$PWD/target/release/gatehouse
SEED=$PWD/target/release/examples/seed_keys
WORK=$(mktemp -d)
OUT=bench/results/verify_http-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
PORT=$((20000 + RANDOM % 20000))
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

run_wrk() { # label url [script]
  local label=$1 url=$2 script=${3:-}
  for r in $(seq 1 "$ROUNDS"); do
    if [ -n "$script" ]; then
      wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "$url" > "$WORK/wrk.txt"
    else
      wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url" > "$WORK/wrk.txt"
    fi
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")
    non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.txt")
    echo "$label round=$r rps=$rps p50=$p50 p99=$p99 non2xx=${non2xx:-0}" | tee -a "$OUT"
  done
}

for COUNT in 1000 1000000; do
  DATA=$WORK/data-$COUNT
  mkdir -p "$DATA"
  "$SEED" "$DATA/gatehouse.db" "$COUNT" 2>&1 | tee -a "$OUT"
  export ADMIN TARGET
  ADMIN=$("$BIN" --data-dir "$DATA" keys create --name bench-caller --rate-limit 10000000/1s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
  TARGET=$("$BIN" --data-dir "$DATA" keys create --name bench-target --rate-limit 10000000/1s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
  GATEHOUSE_LOG_LEVEL=warn "$BIN" --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" > "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  # Warm the cache for both keys.
  curl -sf -X POST "http://127.0.0.1:$PORT/v1/keys/verify" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "{\"key\":\"$TARGET\"}" | grep -q '"valid":true'
  echo "idle_rss_kb keys=$COUNT $(awk '/VmRSS/ {print $2}' /proc/$SERVER_PID/status)" | tee -a "$OUT"
  run_wrk "healthz keys=$COUNT" "http://127.0.0.1:$PORT/healthz"
  run_wrk "verify keys=$COUNT" "http://127.0.0.1:$PORT/v1/keys/verify" bench/verify_post.lua
  # Every verify answer must have been a real "valid", not a 200 that says rate_limited.
  limited=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^gatehouse_rate_limited_total/ {print $2}')
  valid=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk -F' ' '/^gatehouse_key_verifications_total\{code="valid"\}/ {print $2}')
  echo "check keys=$COUNT rate_limited=${limited:-0} valid_verifications=${valid:-0}" | tee -a "$OUT"
  if [ "${limited:-0}" != "0" ]; then echo "requests were rate limited; the numbers above are not valid verifications" >&2; exit 1; fi
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
done

python3 - "$OUT" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'(\w+) keys=(\d+) round=\d+ rps=([\d.]+) p50=(\S+) p99=(\S+)', line)
    if not m: continue
    def ms(v):
        n = float(re.sub(r'[a-z]+$', '', v))
        return n / 1000 if v.endswith('us') else n * 1000 if v.endswith('s') and not v.endswith('ms') else n
    rows.setdefault((m[1], int(m[2])), []).append((float(m[3]), ms(m[4]), ms(m[5])))
print("\nmedians (req/s, p50 ms, p99 ms):")
for (name, keys), vals in sorted(rows.items()):
    print(f"  {name:8} keys={keys:>8}  {statistics.median(v[0] for v in vals):>10.0f}  {statistics.median(v[1] for v in vals):6.2f}  {statistics.median(v[2] for v in vals):6.2f}")
v1 = statistics.median(v[0] for v in rows[('verify', 1000)])
v2 = statistics.median(v[0] for v in rows[('verify', 1000000)])
h1 = statistics.median(v[0] for v in rows[('healthz', 1000)])
print(f"  verify 1M/1k throughput ratio: {v2 / v1:.3f}")
print(f"  verify / healthz (1k keys): {v1 / h1:.3f}")
PY
echo "raw results: $OUT"
