#!/usr/bin/env bash
# Dashboard pages at 100,000 keys (issue 13 "Measure it", SPEC §12), on SQLite and on PostgreSQL.
# Seeds each backend with crates/gatehouse-services/examples/seed_dashboard.rs (100,000 keys over four
# apps, their audit entries, 30 days of usage), starts the real server (release build), signs in as
# the owner, and requests each page N times, one at a time on one keep-alive connection:
#   keys_filtered  /dashboard/keys?app=shop&kind=rk&status=active   (a filtered page, 100 keys)
#   keys_search    /dashboard/keys?q=<a number only one key's name holds>   (the search's worst case)
#   key_page       /dashboard/keys/<the busiest key>   (settings, audit trail, both usage charts)
#   audit          /dashboard/audit   and   audit_action  /dashboard/audit?action=key.revoked
# Server time is the server's own per-request latency (its debug "request" log line, latency_us);
# the client's time is printed beside it. Also writes the query plans of the pages' statements.
# Usage: bash bench/dashboard_http.sh [REQUESTS_PER_PAGE] [KEYS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400}
KEYS=${2:-100000}
BACKENDS=${BACKENDS:-"sqlite postgres"}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
# PROFILE=debug only checks that the script works; numbers come from release builds.
PROFILE=${PROFILE:-release}
FLAG=$([ "$PROFILE" = release ] && echo --release || true)
nice -n 10 cargo build -q $FLAG -p gatehouse
nice -n 10 cargo build -q $FLAG -p gatehouse-services --example seed_dashboard
BIN=$PWD/target/$PROFILE/gatehouse
SEED=$PWD/target/$PROFILE/examples/seed_dashboard
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench/results/dashboard_http-$STAMP.txt
mkdir -p bench/results
WORK=$(mktemp -d)
PIDS=()
PGDB=""
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$PGDB" ] && psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
echo "dashboard_http $STAMP profile=$PROFILE keys=$KEYS requests_per_page=$N hourly_keys=${SEED_HOURLY_KEYS:-1000} minute_keys=${SEED_MINUTE_KEYS:-100} load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"

for backend in $BACKENDS; do
  base=$((20000 + RANDOM % 20000)); GW=$base; CP=$((base + 1)); UP=$((base + 2))
  D=$WORK/$backend; mkdir -p "$D/data" "$D/app"
  if [ "$backend" = postgres ]; then
    PGDB=gatehouse_bench_$RANDOM$RANDOM
    psql -q "$PG_ADMIN" -c "CREATE DATABASE $PGDB" >/dev/null
    DB="${PG_ADMIN%/*}/$PGDB"; DBLINE="database_url = \"$DB\""
  else
    DB=$D/data/gatehouse.db; DBLINE=""
  fi
  start=$(date +%s)
  SEEDED=$("$SEED" "$DB" "$KEYS" shop,blog,billing,search 2> "$D/seed.log")
  echo "$backend seed_seconds=$(( $(date +%s) - start )) $SEEDED" | tee -a "$OUT"
  BUSY=$(echo "$SEEDED" | python3 -c 'import json,sys; print(json.load(sys.stdin)["busy_key"])')
  SEARCH=$(echo "$SEEDED" | python3 -c 'import json,sys; print(json.load(sys.stdin)["search"])')
  printf 'v: 0\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:%s\n    presets:\n      api_keys: true\n' "$UP" > "$D/app/Spacefile"
  {
    echo "listen = \"127.0.0.1:$CP\""
    echo "gateway_listen = \"127.0.0.1:$GW\""
    echo "data_dir = \"$D/data\""
    echo "$DBLINE"
    echo 'log_format = "json"'
    echo 'log_level = "warn,gatehouse_server::api=debug"'
    echo 'owner_email = "bench@example.com"'
    echo 'owner_password = "bench password 123"'
    for app in shop blog billing search; do
      printf '[[apps]]\nname = "%s"\nhosts = ["%s.localhost:%s"]\nspacefile = "app/Spacefile"\n' "$app" "$app" "$GW"
    done
  } > "$D/gatehouse.toml"
  "$BIN" --config "$D/gatehouse.toml" serve > "$D/serve.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$CP/healthz" >/dev/null && break; sleep 0.1; done

  # The statements these pages run, as the WHERE builder writes them, and how each backend plans them.
  now=$(($(date +%s) * 1000))
  PLANS=(
    "SELECT id FROM api_keys WHERE workspace = 'default' AND kind = 'rk' AND app = 'shop' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $now) ORDER BY id DESC LIMIT 101"
    "SELECT id FROM api_keys WHERE workspace = 'default' AND (LOWER(name) LIKE '%$SEARCH%' ESCAPE '\\' OR LOWER(id) LIKE '%$SEARCH%' ESCAPE '\\' OR LOWER(display_prefix || last4) LIKE '%$SEARCH%' ESCAPE '\\') ORDER BY id DESC LIMIT 101"
    "SELECT id FROM api_keys WHERE workspace = 'default' AND revoked_at IS NOT NULL ORDER BY id DESC LIMIT 101"
    "SELECT id FROM audit_log WHERE workspace = 'default' AND target_id = '$BUSY' ORDER BY id DESC LIMIT 101"
    "SELECT id FROM audit_log WHERE workspace = 'default' ORDER BY id DESC LIMIT 51"
    "SELECT id FROM audit_log WHERE workspace = 'default' AND action = 'key.revoked' ORDER BY id DESC LIMIT 51"
    "SELECT bucket FROM usage_minute WHERE cred_kind = 'api_key' AND cred_id = '$BUSY' AND bucket >= $((now - 86400000)) AND bucket < $now"
    "SELECT bucket FROM usage_hour WHERE cred_kind = 'api_key' AND cred_id = '$BUSY' AND bucket >= $((now - 2592000000)) AND bucket < $now"
  )
  for q in "${PLANS[@]}"; do
    echo "plan $backend: $q" >> "$OUT"
    if [ "$backend" = postgres ]; then
      psql -q "$DB" -At -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $q" | sed 's/^/    /' >> "$OUT"
    else
      sqlite3 -readonly "$DB" "EXPLAIN QUERY PLAN $q" | sed 's/^/    /' >> "$OUT"
    fi
  done

  for page in "keys_filtered=/dashboard/keys?app=shop&kind=rk&status=active" "keys_search=/dashboard/keys?q=$SEARCH" \
              "key_page=/dashboard/keys/$BUSY" "audit=/dashboard/audit" "audit_action=/dashboard/audit?action=key.revoked"; do
    before=$(wc -l < "$D/serve.log")
    client=$(python3 bench/dashboard/measure.py "http://127.0.0.1:$CP" bench@example.com "bench password 123" "$N" "$page")
    sleep 0.5
    server=$(tail -n +"$((before + 1))" "$D/serve.log" | python3 -c '
import json, statistics, sys
us = []
for line in sys.stdin:
    try: r = json.loads(line)
    except ValueError: continue
    f = r.get("fields", r)
    if f.get("message") == "request" and str(f.get("route", "")).startswith("/dashboard/") and f.get("status") == 200:
        us.append(int(f["latency_us"]))
us = us[-int(sys.argv[1]):]
us.sort()
print(json.dumps({"server_n": len(us), "server_median_ms": round(statistics.median(us) / 1000, 2),
                  "server_p99_ms": round(us[int(0.99 * (len(us) - 1))] / 1000, 2)}))' "$N")
    echo "$backend $client $server" | tee -a "$OUT"
  done
  kill "${PIDS[-1]}" 2>/dev/null || true
  wait "${PIDS[-1]}" 2>/dev/null || true
  if [ "$backend" = postgres ]; then psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null; PGDB=""; fi
done
echo "raw results and query plans: $OUT"
