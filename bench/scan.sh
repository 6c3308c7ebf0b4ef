#!/usr/bin/env bash
# `gatehouse scan` against trufflehog3 and detect-secrets (PyPI, in a venv made here) and ripgrep (the
# speed floor), in the same run, on a generated tree of mixed text with planted keys, and `--git` on a
# generated repository. Release build. Three rounds each, medians; checks zero missed planted keys and
# zero false positives for gatehouse.
# Usage: bash bench/scan.sh [TREE_MB] [SMALL_TREE_MB] [COMMITS]
#   TREE_MB (default 1024): the tree gatehouse and ripgrep scan.
#   SMALL_TREE_MB (default 2): the sized-down tree all four scan (the Python scanners are too slow for
#   the full one); the ratios are taken there.
set -euo pipefail
cd "$(dirname "$0")/.."
TREE_MB=${1:-1024}
SMALL_MB=${2:-2}
COMMITS=${3:-5000}
SMALL_COMMITS=${SMALL_COMMITS:-50}
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-$(mktemp -d)}
OUT=bench/results/scan-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
command -v rg >/dev/null || { apt-get update -qq && apt-get install -y -qq ripgrep; }
VENV=bench/scan/.venv
[ -x "$VENV/bin/trufflehog3" ] && [ -x "$VENV/bin/detect-secrets" ] || {
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/scan/requirements.txt
}
cargo build -q --release -p gatehouse
BIN=$PWD/target/release/gatehouse

[ -d "$WORK/small" ] || python3 bench/scan/gen.py tree "$WORK/small" "$SMALL_MB"
# The big tree: a 64 MiB generated tree copied side by side until it reaches TREE_MB (generating
# 1 GiB line by line in Python takes longer than the scans it feeds), its planted list likewise.
if [ ! -d "$WORK/tree" ]; then
  python3 bench/scan/gen.py tree "$WORK/base" 64
  mkdir -p "$WORK/tree"; : > "$WORK/tree.planted"
  for i in $(seq -w 1 $(( (TREE_MB + 63) / 64 ))); do
    cp -r "$WORK/base" "$WORK/tree/c$i"
    sed "s|^|c$i/|" "$WORK/base.planted" >> "$WORK/tree.planted"
  done
fi
[ -d "$WORK/repo" ] || python3 bench/scan/gen.py repo "$WORK/repo" "$COMMITS"
[ -d "$WORK/srepo" ] || python3 bench/scan/gen.py repo "$WORK/srepo" "$SMALL_COMMITS"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# run_once CMD...: "wall cpu" seconds of one run (cpu = user + system of the command and its children;
# on a loaded shared machine it moves less than wall time).
run_once() {
  python3 -c '
import resource, subprocess, sys, time
s = time.monotonic()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
w = time.monotonic() - s
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{w:.3f} {r.ru_utime + r.ru_stime:.3f}")' "$@"
}
# time_it LABEL CMD...: one warm-up run (fills the page cache), then ROUNDS runs; prints the median
# wall and CPU seconds and keeps them in $WORK/LABEL.time and LABEL.cpu.
time_it() {
  local label=$1; shift
  [ "${WARMUP:-1}" = 1 ] && run_once "$@" >/dev/null
  for _ in $(seq 1 "$ROUNDS"); do run_once "$@"; done > "$WORK/$label.runs"
  cut -d' ' -f1 "$WORK/$label.runs" | median > "$WORK/$label.time"
  cut -d' ' -f2 "$WORK/$label.runs" | median > "$WORK/$label.cpu"
  echo "wall $(cat "$WORK/$label.time")  cpu $(cat "$WORK/$label.cpu")"
}

# check LABEL JSON PLANTED PREFIX: gatehouse's findings against the planted list (path, line).
check() {
  python3 - "$2" "$3" "$4" <<'PY'
import json, sys
found = {(f["path"].removeprefix(sys.argv[3]), f["line"]) for f in json.load(open(sys.argv[1]))["findings"]}
planted = {(l.split("\t")[0], int(l.split("\t")[1])) for l in open(sys.argv[2])}
print(f"planted {len(planted)}, found {len(found)}, missed {len(planted - found)}, false positives {len(found - planted)}")
PY
}

{
  echo "# bench/scan.sh $(date -u +%FT%TZ) on $(nproc) CPUs (shared machine: other builds were running)"
  echo "# tree ${TREE_MB} MiB: $(find "$WORK/tree" -type f | wc -l) files, $(du -sm "$WORK/tree" | cut -f1) MiB on disk; small tree ${SMALL_MB} MiB; repo ${COMMITS} commits"
  echo "## correctness (gatehouse)"
  (cd "$WORK/tree" && "$BIN" scan --format json . > "$WORK/tree.json" || true)
  echo "tree:  $(check tree "$WORK/tree.json" "$WORK/tree.planted" ./)"
  (cd "$WORK/small" && "$BIN" scan --format json . > "$WORK/small.json" || true)
  echo "small: $(check small "$WORK/small.json" "$WORK/small.planted" ./)"
  "$BIN" scan --git --format json "$WORK/repo" > "$WORK/repo.json" || true
  echo "repo:  $(check repo "$WORK/repo.json" "$WORK/repo.planted" "")"
  echo "rg lines matching 'gth_(sk|rk)_' in tree (planted + look-alikes): $(rg -c 'gth_(sk|rk)_' "$WORK/tree" | awk -F: '{s+=$NF} END {print s}')"

  echo "## ${TREE_MB} MiB tree, median of ${ROUNDS} (seconds)"
  echo "gatehouse scan      $(time_it g_tree "$BIN" scan "$WORK/tree")"
  echo "rg 'gth_(sk|rk)_'   $(time_it rg_tree rg -c 'gth_(sk|rk)_' "$WORK/tree")"

  echo "## ${SMALL_MB} MiB tree, median of ${ROUNDS} (seconds)"
  echo "gatehouse scan      $(time_it g_small "$BIN" scan "$WORK/small")"
  echo "rg 'gth_(sk|rk)_'   $(time_it rg_small rg -c 'gth_(sk|rk)_' "$WORK/small")"
  echo "trufflehog3         $(ROUNDS=1 WARMUP=0 time_it th_small "$VENV/bin/trufflehog3" --no-history --format JSON -o "$WORK/th.json" "$WORK/small")"
  echo "detect-secrets      $(ROUNDS=1 WARMUP=0 time_it ds_small "$VENV/bin/detect-secrets" scan --all-files "$WORK/small")"

  echo "## --git on ${COMMITS} commits, median of ${ROUNDS} (seconds)"
  echo "gatehouse scan --git                      $(time_it g_git "$BIN" scan --git "$WORK/repo")"
  echo "git cat-file --batch-all-objects | rg     $(time_it shell_git sh -c "git -C '$WORK/repo' cat-file --batch-all-objects --batch | rg -c 'gth_(sk|rk)_'")"
  echo "## --git on ${SMALL_COMMITS} commits (trufflehog3 is too slow for the big one), median of ${ROUNDS} (seconds)"
  echo "gatehouse scan --git                      $(time_it g_sgit "$BIN" scan --git "$WORK/srepo")"
  echo "trufflehog3 (history)                     $(ROUNDS=1 WARMUP=0 time_it th_git "$VENV/bin/trufflehog3" --format JSON -o "$WORK/thg.json" "$WORK/srepo")"

  echo "## ratios (medians, same run)"
  python3 - "$WORK" <<'PY'
import sys
w = sys.argv[1]
t = lambda n: float(open(f"{w}/{n}.time").read())
c = lambda n: float(open(f"{w}/{n}.cpu").read())
for what, f in (("wall", t), ("cpu", c)):
    print(f"[{what}] tree:  gatehouse / rg = {f('g_tree') / f('rg_tree'):.2f}")
    print(f"[{what}] small: gatehouse / rg = {f('g_small') / f('rg_small'):.2f}; trufflehog3 / gatehouse = {f('th_small') / f('g_small'):.1f}x; detect-secrets / gatehouse = {f('ds_small') / f('g_small'):.1f}x")
    print(f"[{what}] git:   gatehouse / (git cat-file | rg) = {f('g_git') / f('shell_git'):.2f}; small repo: trufflehog3 / gatehouse = {f('th_git') / f('g_sgit'):.1f}x")
PY
} 2>&1 | tee "$OUT"
echo "results in $OUT"
