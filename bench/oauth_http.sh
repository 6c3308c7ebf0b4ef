#!/usr/bin/env bash
# OAuth benchmark (issue: the OAuth server). Gatehouse (durable SQLite, opaque tokens) against
# oidc-provider (npm, in-memory adapter, opaque tokens), measured in one run with wrk:
#   client_credentials  — POST /token, the same request over and over;
#   refresh_token       — each connection keeps a rotation chain going (the answer's refresh token is
#                         the next request's), so every request spends a fresh token;
#   introspection       — POST of a live access token, authenticated as the client.
# Every request authenticates the client with client_secret_basic on both servers. ROUNDS rounds,
# servers interleaved, medians and ratios at the end.
# Usage: bash bench/oauth_http.sh [DURATION_SECS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
THREADS=2
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -d bench/oauth/node_modules/oidc-provider ] || (cd bench/oauth && npm ci --no-audit --no-fund --loglevel=error)
cargo build -q --release -p gatehouse
BIN=$PWD/target/release/gatehouse
WORK=$(mktemp -d)
OUT=bench/results/oauth_http-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
base=$((20000 + RANDOM % 20000))
CP=$base; OP=$((base + 1))
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
TOKENS_NEEDED=$((CONNS * ROUNDS))

# --- oidc-provider ---------------------------------------------------------------------------------
(cd bench/oauth && PORT=$OP N_REFRESH=$TOKENS_NEEDED REFRESH_OUT="$WORK/op_rt.txt" exec node provider.mjs > "$WORK/op.log" 2>&1) &
PIDS+=($!)
OP_BASIC=$(printf 'bench:bench-secret-0123456789abcdef' | base64 -w0)

# --- Gatehouse -------------------------------------------------------------------------------------
cat > "$WORK/gatehouse.toml" <<CFG
listen = "127.0.0.1:$CP"
data_dir = "$WORK/data"
log_level = "warn"
owner_email = "bench@example.com"
owner_password = "bench password 123"
CFG
CLIENT=$("$BIN" --config "$WORK/gatehouse.toml" oauth clients create --name bench --redirect-uri http://127.0.0.1/cb --scope api:read --json)
GH_ID=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
GH_SECRET=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
GH_BASIC=$(printf '%s:%s' "$GH_ID" "$GH_SECRET" | base64 -w0)
"$BIN" --config "$WORK/gatehouse.toml" serve > "$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$CP/healthz" >/dev/null && curl -s "http://127.0.0.1:$OP/.well-known/openid-configuration" >/dev/null && break; sleep 0.2; done
for _ in $(seq 1 300); do [ -s "$WORK/op_rt.txt" ] && break; sleep 0.2; done
GH_CP="http://127.0.0.1:$CP" GH_CLIENT_ID=$GH_ID GH_CLIENT_SECRET=$GH_SECRET GH_EMAIL=bench@example.com GH_PASSWORD="bench password 123" \
  N=$TOKENS_NEEDED node bench/oauth/gatehouse_tokens.mjs > "$WORK/gh_rt.txt"

access_token() { # url basic body
  curl -sf -H "Authorization: Basic $2" -d "$3" "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
GH_AT=$(access_token "http://127.0.0.1:$CP/oauth/token" "$GH_BASIC" "grant_type=client_credentials&scope=api:read")
OP_AT=$(access_token "http://127.0.0.1:$OP/token" "$OP_BASIC" "grant_type=client_credentials&scope=api:read")
echo "# oauth_http duration=${DURATION}s connections=$CONNS threads=$THREADS rounds=$ROUNDS $(nproc) cpus" | tee "$OUT"

wrk_run() { # label round url lua [env...]
  local label=$1 round=$2 url=$3 lua=$4; shift 4
  env "$@" THREADS=$THREADS wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$lua" "$url" > "$WORK/wrk.txt"
  echo "$label round=$round rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt") p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt") non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.txt")" | tee -a "$OUT"
}
for r in $(seq 1 "$ROUNDS"); do
  sed -n "$(( (r - 1) * CONNS + 1 )),$(( r * CONNS ))p" "$WORK/gh_rt.txt" > "$WORK/gh_round.txt"
  sed -n "$(( (r - 1) * CONNS + 1 )),$(( r * CONNS ))p" "$WORK/op_rt.txt" > "$WORK/op_round.txt"
  wrk_run gh_client_credentials "$r" "http://127.0.0.1:$CP/oauth/token" bench/oauth/post_form.lua BASIC="$GH_BASIC" BODY="grant_type=client_credentials&scope=api:read"
  wrk_run op_client_credentials "$r" "http://127.0.0.1:$OP/token" bench/oauth/post_form.lua BASIC="$OP_BASIC" BODY="grant_type=client_credentials&scope=api:read"
  wrk_run gh_refresh_token "$r" "http://127.0.0.1:$CP/oauth/token" bench/oauth/refresh_chain.lua BASIC="$GH_BASIC" TOKENS="$WORK/gh_round.txt"
  wrk_run op_refresh_token "$r" "http://127.0.0.1:$OP/token" bench/oauth/refresh_chain.lua BASIC="$OP_BASIC" TOKENS="$WORK/op_round.txt"
  wrk_run gh_introspection "$r" "http://127.0.0.1:$CP/oauth/introspect" bench/oauth/post_form.lua BASIC="$GH_BASIC" BODY="token=$GH_AT"
  wrk_run op_introspection "$r" "http://127.0.0.1:$OP/token/introspection" bench/oauth/post_form.lua BASIC="$OP_BASIC" BODY="token=$OP_AT"
done
# Introspection must still say active at the end (a benchmark of "inactive" answers would flatter).
curl -sf -H "Authorization: Basic $GH_BASIC" -d "token=$GH_AT" "http://127.0.0.1:$CP/oauth/introspect" | grep -q '"active":true'
curl -sf -H "Authorization: Basic $OP_BASIC" -d "token=$OP_AT" "http://127.0.0.1:$OP/token/introspection" | grep -q '"active":true'

python3 - "$OUT" <<'PY' | tee -a "$OUT"
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'(gh|op)_(\w+) round=\d+ rps=([\d.]+) p99=(\S+) non2xx=(\S*)', line)
    if m:
        rows.setdefault((m[1], m[2]), []).append((float(m[3]), m[4], m[5] or "0"))
print("median over rounds:")
for what in ["client_credentials", "refresh_token", "introspection"]:
    gh = statistics.median(r[0] for r in rows[("gh", what)])
    op = statistics.median(r[0] for r in rows[("op", what)])
    errs = sum(int(r[2]) for r in rows[("gh", what)]) + sum(int(r[2]) for r in rows[("op", what)])
    print(f"  {what:<19} gatehouse {gh:>9.0f} req/s   oidc-provider {op:>8.0f} req/s   ratio {gh / op:5.1f}x   non-2xx {errs}")
PY
echo "results in $OUT"
