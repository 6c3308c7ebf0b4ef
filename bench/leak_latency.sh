#!/usr/bin/env bash
# Report-to-revoked latency (SPEC §13: a leak revoked on every node within 1 s). Runs the story
# `secret_scanning::a_signed_github_batch_revokes_what_is_ours_and_live_once` ROUNDS times on each
# backend: a GitHub-signed batch to node A, then polling a second node on the same database (5 ms
# apart) until it refuses the leaked key; in the same run, an ordinary `POST /v1/keys/{id}/revoke`
# measured the same way as the peer. Change-feed poll interval: the tests' 100 ms. Medians.
# Usage: bash bench/leak_latency.sh   (ROUNDS=7 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
OUT=bench/results/leak_latency-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for i in $(seq "$ROUNDS"); do
  cargo nextest run -p gatehouse-server --test it --no-capture \
    -E 'test(/secret_scanning::a_signed_github_batch/)' 2>&1 | grep '^leak_latency' >>"$LOG"
done
python3 - "$LOG" <<'PY' | tee "$OUT"
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=") for kv in line.split()[1:])
    rows.setdefault(f["backend"], []).append({k: float(v) for k, v in f.items() if k != "backend"})
for backend, rs in sorted(rows.items()):
    med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    worst = max(r["report_to_refused_node_b_ms"] for r in rs)
    print(f"{backend}: n={len(rs)} report answered {med['report_answer_ms']:.1f} ms, "
          f"report→refused on node B {med['report_to_refused_node_b_ms']:.1f} ms (max {worst:.1f}), "
          f"plain revoke→refused on node B {med['revoke_to_refused_node_b_ms']:.1f} ms, "
          f"ratio {med['report_to_refused_node_b_ms'] / med['revoke_to_refused_node_b_ms']:.2f}")
PY
