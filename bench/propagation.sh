#!/usr/bin/env bash
# Revocation propagation across nodes (SPEC §16): three `gatehouse serve` nodes on one PostgreSQL
# database; N keys are each created on node A, cached on B and C, revoked on A, and B and C are polled
# with the key until they answer 401 (bench/propagation/measure.mjs). Two clusters in the same run:
#   notify:  the database as migrated (the 0019 trigger pushes every change-feed write by NOTIFY);
#   polling: the same, with that trigger dropped, so the nodes learn of revocations by polling alone
#            (cache.poll_interval_ms, default 250).
# Usage: bash bench/propagation.sh [N]   (N revocations per cluster, default 100; 2 samples each).
# BIN overrides the binary (default: a release build); PG_URL the server (a database is
# created and dropped per cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
if [ -z "${BIN:-}" ]; then cargo build -q --release -p gatehouse; BIN=$PWD/target/release/gatehouse; fi
WORK=$(mktemp -d)
OUT=bench/results/propagation-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
PIDS=(); DBS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  for d in "${DBS[@]:-}"; do psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
echo "# propagation n=$N per cluster, 3 nodes, $(nproc) cpus, binary $BIN" | tee "$OUT"
cluster() { # name, then whether to drop the NOTIFY trigger (yes|no)
  local name=$1 drop=$2 db="gatehouse_bench_propagation_$1_$$"
  psql -q "$PG_URL/postgres" -c "CREATE DATABASE $db"; DBS+=("$db")
  local url="$PG_URL/$db" nodes=()
  for i in 0 1 2; do
    local port=$((20000 + RANDOM % 20000)) dir="$WORK/$name$i"
    mkdir -p "$dir"
    printf 'listen = "127.0.0.1:%s"\ndata_dir = "data"\nlog_level = "warn"\ndatabase_url = "%s"\n' "$port" "$url" > "$dir/gatehouse.toml"
    nodes+=("http://127.0.0.1:$port")
  done
  local admin
  admin=$(cd "$WORK/${name}0" && "$BIN" --config gatehouse.toml keys create --name bench --rate-limit 10000000/1s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
  if [ "$drop" = yes ]; then psql -q "$url" -c "DROP TRIGGER key_changes_notify ON key_changes"; fi
  for i in 0 1 2; do
    (cd "$WORK/$name$i" && exec "$BIN" --config gatehouse.toml serve >> serve.log 2>&1) & PIDS+=($!)
  done
  for b in "${nodes[@]}"; do
    for _ in $(seq 1 200); do curl -sf "$b/readyz" >/dev/null && break; sleep 0.1; done
  done
  local result
  result=$(NODES=$(IFS=,; echo "${nodes[*]}") ADMIN=$admin N=$N node bench/propagation/measure.mjs)
  echo "$name $result" | tee -a "$OUT"
}
cluster notify no
cluster polling yes
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg) (other builds share this machine)" | tee -a "$OUT"
