#!/usr/bin/env bash
# Gateway throughput with usage counting on and off (SPEC §12 "Usage": within 3 %), in one run.
# Two `gatehouse serve` processes (release build) on the same machine and the same nginx upstream,
# identical but for `[usage] enabled`; each has its own SQLite data dir and one API key. The load
# generator alternates between them, round after round (off, on, off, on, …), so drift in the
# machine's load hits both alike; each round is one wrk run (oha when wrk is missing) with an API key
# on a private route. Medians of ROUNDS rounds each (default 5, at least 3); prints on/off.
# Usage: bash bench/usage_overhead.sh [DURATION_SECS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-5}
[ "$ROUNDS" -ge 3 ] || { echo "ROUNDS must be at least 3" >&2; exit 2; }
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }
if ! command -v wrk >/dev/null && ! command -v oha >/dev/null; then
  nice -n 10 cargo install oha --locked
fi
nice -n 10 cargo build -q --release -p gatehouse
BIN=$PWD/target/release/gatehouse
WORK=$(mktemp -d)
OUT=bench/results/usage_overhead-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
base=$((20000 + RANDOM % 20000)); UP=$base
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/up/logs"
cat > "$WORK/up/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
CONF
nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"
echo "usage_overhead duration=${DURATION}s conns=$CONNS rounds=$ROUNDS load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"

declare -A KEY GWPORT
for mode in off on; do
  D=$WORK/$mode; mkdir -p "$D/app"
  [ "$mode" = on ] && gw=$((base + 10)) || gw=$((base + 20))
  GWPORT[$mode]=$gw
  printf 'v: 0\napp_name: bench\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:%s\n    presets:\n      api_keys: true\n' "$UP" > "$D/app/Spacefile"
  cat > "$D/gatehouse.toml" <<CFG
listen = "127.0.0.1:$((gw + 1))"
gateway_listen = "127.0.0.1:$gw"
data_dir = "$D/data"
log_level = "warn"
[usage]
enabled = $([ "$mode" = on ] && echo true || echo false)
flush_interval_secs = 5
[rate_limit]
limit = 10000000
window_secs = 1
[[apps]]
name = "bench"
hosts = ["127.0.0.1:$gw"]
spacefile = "app/Spacefile"
CFG
  KEY[$mode]=$("$BIN" --config "$D/gatehouse.toml" keys create --name bench --rate-limit 10000000/1s --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
  "$BIN" --config "$D/gatehouse.toml" serve > "$D/serve.log" 2>&1 &
  PIDS+=($!)
done
for mode in off on; do
  for _ in $(seq 1 100); do
    curl -sf -H "X-Space-App-Key: ${KEY[$mode]}" "http://127.0.0.1:${GWPORT[$mode]}/x" >/dev/null && break; sleep 0.1
  done
done

round() { # mode round
  local url="http://127.0.0.1:${GWPORT[$1]}/x" hdr="X-Space-App-Key: ${KEY[$1]}" rps non2xx
  if command -v wrk >/dev/null; then
    wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "$hdr" "$url" > "$WORK/out.txt"
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/out.txt"); non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/out.txt")
  else
    oha -z "${DURATION}s" -c "$CONNS" --no-tui --output-format json -H "$hdr" "$url" > "$WORK/out.txt"
    read -r rps non2xx < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["statusCodeDistribution"]; print(round(d["summary"]["requestsPerSec"]), sum(v for k,v in c.items() if k!="200"))' "$WORK/out.txt")
  fi
  echo "usage=$1 round=$2 rps=$rps non2xx=${non2xx:-0}" | tee -a "$OUT"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then round off "$r"; round on "$r"; else round on "$r"; round off "$r"; fi
done
# The counts did reach storage on the "on" server (and none on the "off" one).
sleep 6
for mode in off on; do
  rows=$(python3 - "$WORK/$mode/data/gatehouse.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT COALESCE(SUM(allowed), 0) FROM usage_minute WHERE cred_kind = ''").fetchone()[0])
PY
)
  echo "usage=$mode allowed_counted=$rows" | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
v = {"on": [], "off": []}
for line in open(sys.argv[1]):
    m = re.match(r'usage=(on|off) round=\d+ rps=([\d.]+)', line)
    if m:
        v[m[1]].append(float(m[2]))
on, off = statistics.median(v["on"]), statistics.median(v["off"])
print(f"median req/s: usage off {off:.0f}, usage on {on:.0f}; on/off = {on / off:.3f} ({(on / off - 1) * 100:+.1f} %)")
PY
echo "raw results: $OUT"
