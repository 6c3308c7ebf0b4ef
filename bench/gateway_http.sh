#!/usr/bin/env bash
# Gateway benchmark (issue: the gateway). One upstream (nginx answering "ok"), measured in one run:
# direct, through nginx as a plain reverse proxy, through Gatehouse's HTTP stack alone (the
# `stack_floor` example: same runtimes, router and upstream client, no gateway logic), and through
# Gatehouse on a public route, with an API key, and with a session; over TLS, nginx terminating TLS
# against Gatehouse's own TLS (`[tls] cert_file`, same ECDSA P-256 certificate) with an API key, and
# the handshake rate of both with a new connection per request (`Connection: close`). wrk for peak throughput; oha at half of nginx's peak rate for p99 under
# load, when oha is installed (cargo install oha). Three rounds each, medians.
# Usage: bash bench/gateway_http.sh [DURATION_SECS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }
cargo build -q --release -p gatehouse
cargo build -q --release -p gatehouse-server --example stack_floor
BIN=$PWD/target/release/gatehouse
WORK=$(mktemp -d)
OUT=bench/results/gateway_http-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
base=$((20000 + RANDOM % 20000))
UP=$base; NGX=$((base + 1)); GW=$((base + 2)); CP=$((base + 3)); FLOOR=$((base + 4))
NGXS=$((base + 5)); GWS=$((base + 6)); CPS=$((base + 7))
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/px/nginx.pid" ] && kill "$(cat "$WORK/px/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

nginx_conf() { # dir workers body
  mkdir -p "$1/logs"
  cat > "$1/nginx.conf" <<CONF
worker_processes $2;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  $3
}
CONF
  nginx -p "$1" -c "$1/nginx.conf"
}
# One certificate for both TLS terminators: ECDSA P-256, as a CA would issue today.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
nginx_conf "$WORK/up" 1 "server { listen 127.0.0.1:$UP; location / { return 200 \"ok\\n\"; } }"
nginx_conf "$WORK/px" auto "upstream u { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
  server { listen 127.0.0.1:$NGXS ssl; ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

mkdir -p "$WORK/app"
cat > "$WORK/app/Spacefile" <<SF
v: 0
app_name: bench
micros:
  - name: main
    upstream: http://127.0.0.1:$UP
    public_routes: ["/public/*"]
    presets:
      api_keys: true
SF
cat > "$WORK/gatehouse.toml" <<CFG
listen = "127.0.0.1:$CP"
gateway_listen = "127.0.0.1:$GW"
data_dir = "$WORK/data"
log_level = "warn"
owner_email = "bench@example.com"
owner_password = "bench password 123"
[rate_limit]
limit = 10000000
window_secs = 1
[[apps]]
name = "bench"
hosts = ["127.0.0.1:$GW"]
spacefile = "app/Spacefile"
CFG
# The same deployment over TLS: a second node on the same data dir (so the same key), own ports.
sed -e "s/127.0.0.1:$CP/127.0.0.1:$CPS/; s/127.0.0.1:$GW/127.0.0.1:$GWS/g" "$WORK/gatehouse.toml" > "$WORK/tls.toml"
printf '[tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$WORK/cert.pem" "$WORK/key.pem" >> "$WORK/tls.toml"
KEY=$("$BIN" --config "$WORK/gatehouse.toml" keys create --name bench --rate-limit 10000000/1s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
"$BIN" --config "$WORK/gatehouse.toml" serve > "$WORK/serve.log" 2>&1 &
GH_PID=$!; PIDS+=("$GH_PID")
"$BIN" --config "$WORK/tls.toml" serve > "$WORK/serve-tls.log" 2>&1 &
PIDS+=($!)
# The same HTTP stack with no gateway logic (per-core runtimes, axum, the pooled upstream client).
target/release/examples/stack_floor "127.0.0.1:$FLOOR" "127.0.0.1:$UP" > "$WORK/floor.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$GW/public/x" >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sfk "https://127.0.0.1:$GWS/public/x" >/dev/null && break; sleep 0.1; done
# Idle memory: after 12 s without a request (the server hands freed pages back every 5 s, once they
# have been free for mimalloc's 1 s purge delay); measured again after the load at the end.
sleep 12
echo "idle_rss_kb gatehouse $(awk '/VmRSS/ {print $2}' /proc/$GH_PID/status)" | tee -a "$OUT"

# A real session, as a browser gets one: the app host sends it to sign in (setting the state cookie the
# ticket is bound to), the control plane signs it in, the ticket is followed back to the app host.
JAR=$WORK/jar
LOGIN=$(curl -s -c "$JAR" -b "$JAR" -o /dev/null -w '%{redirect_url}' -H 'Accept: text/html' "http://127.0.0.1:$GW/private")
PAGE=$(curl -s -c "$JAR" -b "$JAR" "$LOGIN")
CSRF=$(echo "$PAGE" | grep -o 'name="csrf" value="[^"]*"' | cut -d'"' -f4)
STATE=$(echo "$PAGE" | grep -o 'name="state" value="[^"]*"' | cut -d'"' -f4)
CB=$(curl -s -c "$JAR" -b "$JAR" -o /dev/null -w '%{redirect_url}' \
  --data-urlencode "csrf=$CSRF" --data-urlencode "email=bench@example.com" --data-urlencode "password=bench password 123" \
  --data-urlencode "return_to=http://127.0.0.1:$GW/" --data-urlencode "state=$STATE" "http://127.0.0.1:$CP/login")
curl -s -c "$JAR" -b "$JAR" -o /dev/null "$CB"
SESSION=$(awk '$6 == "gatehouse_session" {print $7}' "$JAR")
[ -n "$SESSION" ] || { echo "could not sign in for the session benchmark" >&2; exit 1; }
curl -sf -H "Cookie: gatehouse_session=$SESSION" "http://127.0.0.1:$GW/private" | grep -q ok
curl -sf -H "X-Space-App-Key: $KEY" "http://127.0.0.1:$GW/private" | grep -q ok

run() { # label url [header]
  for r in $(seq 1 "$ROUNDS"); do
    if [ -n "${3:-}" ]; then
      wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$3" "$2" > "$WORK/wrk.txt"
    else
      wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$2" > "$WORK/wrk.txt"
    fi
    echo "$1 round=$r rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt") p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt") p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt") non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.txt")" | tee -a "$OUT"
  done
}
run direct "http://127.0.0.1:$UP/x"
run nginx "http://127.0.0.1:$NGX/x"
run stack_floor "http://127.0.0.1:$FLOOR/x"
run gh_public "http://127.0.0.1:$GW/public/x"
run gh_key "http://127.0.0.1:$GW/private" "X-Space-App-Key: $KEY"
run gh_session "http://127.0.0.1:$GW/private" "Cookie: gatehouse_session=$SESSION"
curl -sfk -H "X-Space-App-Key: $KEY" "https://127.0.0.1:$GWS/private" | grep -q ok
run nginx_tls "https://127.0.0.1:$NGXS/x"
run gh_tls_key "https://127.0.0.1:$GWS/private" "X-Space-App-Key: $KEY"
# A full handshake per request (no session cache or tickets on nginx's side; wrk resumes none).
run nginx_tls_hs "https://127.0.0.1:$NGXS/x" "Connection: close"
run gh_tls_hs "https://127.0.0.1:$GWS/public/x" "Connection: close"

if command -v oha >/dev/null; then
  NGX_PEAK=$(python3 - "$OUT" <<'PY'
import re, statistics, sys
v = [float(m[1]) for m in (re.match(r'nginx round=\d+ rps=([\d.]+)', l) for l in open(sys.argv[1])) if m]
print(int(statistics.median(v) / 2))
PY
)
  for r in $(seq 1 "$ROUNDS"); do
    for target in "direct|http://127.0.0.1:$UP/x|" "nginx|http://127.0.0.1:$NGX/x|" "gh_key|http://127.0.0.1:$GW/private|X-Space-App-Key: $KEY"; do
      IFS='|' read -r label url header <<< "$target"
      args=(-z "${DURATION}s" -q "$NGX_PEAK" -c 32 --no-tui --latency-correction --output-format json)
      [ -n "$header" ] && args+=(-H "$header")
      p99=$(oha "${args[@]}" "$url" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["latencyPercentiles"]["p99"]*1000, 3))')
      echo "halfload rate=$NGX_PEAK $label round=$r p99_ms=$p99" | tee -a "$OUT"
    done
  done
fi

sleep 12
echo "idle_rss_after_load_kb gatehouse $(awk '/VmRSS/ {print $2}' /proc/$GH_PID/status)" | tee -a "$OUT"

python3 - "$OUT" <<'PY'
import re, statistics, sys
rows, half = {}, {}
def ms(v):
    n = float(re.sub(r'[a-z]+$', '', v))
    return n / 1000 if v.endswith('us') else n * 1000 if v.endswith('s') and not v.endswith('ms') else n
for line in open(sys.argv[1]):
    m = re.match(r'(\w+) round=\d+ rps=([\d.]+) p50=(\S+) p99=(\S+)', line)
    if m:
        rows.setdefault(m[1], []).append((float(m[2]), ms(m[3]), ms(m[4])))
    h = re.match(r'halfload rate=(\d+) (\w+) round=\d+ p99_ms=([\d.]+)', line)
    if h:
        half.setdefault(h[2], []).append(float(h[3]))
        rate = h[1]
print("\nmedians (req/s, p50 ms, p99 ms):")
med = {}
for name in ["direct", "nginx", "stack_floor", "gh_public", "gh_key", "gh_session", "nginx_tls", "gh_tls_key", "nginx_tls_hs", "gh_tls_hs"]:
    v = rows[name]
    med[name] = statistics.median(x[0] for x in v)
    print(f"  {name:11} {med[name]:>9.0f}  {statistics.median(x[1] for x in v):6.2f}  {statistics.median(x[2] for x in v):6.2f}")
for name in ["stack_floor", "gh_public", "gh_key", "gh_session"]:
    print(f"  {name} / nginx throughput: {med[name] / med['nginx']:.3f}")
print(f"  gh_key / stack_floor throughput: {med['gh_key'] / med['stack_floor']:.3f}")
print(f"  gh_tls_key / nginx_tls throughput: {med['gh_tls_key'] / med['nginx_tls']:.3f}")
print(f"  gh_tls_hs / nginx_tls_hs handshakes per second: {med['gh_tls_hs'] / med['nginx_tls_hs']:.3f}")
if half:
    print(f"\np99 at half of nginx's peak ({rate} req/s), medians:")
    for name, v in half.items():
        print(f"  {name:8} {statistics.median(v):7.3f} ms")
    d = statistics.median(half['direct'])
    for name in ["nginx", "gh_key"]:
        print(f"  {name} added p99 vs direct: {statistics.median(half[name]) - d:.3f} ms")
PY
echo "raw results: $OUT"
