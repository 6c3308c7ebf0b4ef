#!/usr/bin/env bash
# Runs Gatehouse's whole test suite: formatting and lints, then unit, storage stories and HTTP tests on
# SQLite and PostgreSQL.
# Starts the local PostgreSQL and Redis if they are down and installs the test runner if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 1; done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 1; done
  echo "Redis did not come up on 127.0.0.1:6379" >&2; exit 1
}

# The fault and cluster tests (crates/gatehouse/tests/it/storage_outage.rs, redis_outage.rs) start
# servers of their own: PostgreSQL's initdb/pg_ctl (run as `postgres` via runuser when root) and redis-server.
ensure_fault_test_tools() {
  if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "installing PostgreSQL's server binaries (Debian package) for the storage-outage test"
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server (Debian package) for the Redis-outage test"
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
}

# The ACME tests (crates/gatehouse/tests/it/tls_acme.rs) start Pebble, the ACME test server, and its
# mock DNS pebble-challtestsrv, both from Debian's `pebble` package.
ensure_pebble() {
  if command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null; then return; fi
  log "installing pebble (Debian package) for the ACME tests"
  apt-get update -qq && apt-get install -y -qq pebble >/dev/null
}

ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  log "installing Chromium (Debian package) for the browser test"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# `gatehouse scan --git` tests build real repositories with git.
ensure_git() {
  if command -v git >/dev/null 2>&1; then return; fi
  log "installing git (Debian package) for the scan tests"
  apt-get update -qq && apt-get install -y -qq git
}

ensure_browser_test_packages() {
  # playwright-core drives Debian's Chromium; it never downloads a browser of its own.
  if [ -d tests/browser/node_modules/playwright-core ]; then return; fi
  log "installing the browser test's npm packages"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error)
}

# Installs a test directory's npm packages (if `node_modules/$2` is missing) and its PyPI packages into
# `.venv` (if `$3` does not import). Usage: ensure_packages DIR NPM_PACKAGE "PYTHON_IMPORTS" WHAT
ensure_packages() {
  local dir=$1 npm_pkg=$2 imports=$3 what=$4
  ensure_npm_packages "$dir" "$npm_pkg" "$what"
  ensure_venv "$dir" "$imports" "$what"
}

# Installs a test directory's npm packages from its lock file (if `node_modules/$2` is missing).
# Usage: ensure_npm_packages DIR NPM_PACKAGE WHAT
ensure_npm_packages() {
  local dir=$1 npm_pkg=$2 what=$3
  if [ ! -d "$dir/node_modules/$npm_pkg" ]; then
    log "installing npm packages for $what"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# Installs a test directory's PyPI packages into `.venv` (if `$2` does not import). Usage: ensure_venv DIR "IMPORTS" WHAT
ensure_venv() {
  local dir=$1 imports=$2 what=$3
  if [ ! -x "$dir/.venv/bin/python" ] || ! "$dir/.venv/bin/python" -c "import $imports" 2>/dev/null; then
    log "installing PyPI packages for $what"
    python3 -m venv "$dir/.venv"
    "$dir/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
  fi
}

ensure_postgres
ensure_redis
ensure_fault_test_tools
ensure_pebble
# Third-party OAuth clients run against a real Gatehouse: openid-client (npm), Authlib (PyPI).
ensure_packages tests/oauth-clients openid-client "authlib, requests" "the OAuth client test"
# Receivers verifying deliveries with Stripe's SDKs (npm, PyPI) and the standardwebhooks packages.
ensure_packages tests/webhook-receivers stripe "stripe, standardwebhooks" "the webhook receivers"
# A real OpenID Provider (oidc-provider) and the browser driver for the sign-in-with-a-provider tests.
ensure_npm_packages tests/oidc-provider oidc-provider "the identity provider tests"
# A real h2c-capable upstream (hypercorn) and HTTP/2 client (h2) for the gateway's edge tests.
ensure_venv tests/h2c "h2, hypercorn" "the h2c edge tests"
ensure_chromium
ensure_git
ensure_browser_test_packages
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# Formatting and lints are checked, not hoped for (rustfmt.toml; the lints in the root Cargo.toml).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "installing rustfmt and clippy"
  rustup component add rustfmt clippy
fi
log "cargo fmt --all --check"
cargo fmt --all --check
log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The services crate knows no HTTP framework (ARCHITECTURE.md, gatehouse-services): exact package names.
log "cargo tree -p gatehouse-services -e normal: no HTTP framework"
http_deps=$(cargo tree -p gatehouse-services -e normal --prefix none | awk '{print $1}' | sort -u |
  grep -xE 'axum|hyper|hyper-util|tower|tower-http|reqwest|http' || true)
if [ -n "$http_deps" ]; then
  echo "gatehouse-services depends on an HTTP framework: $(echo $http_deps)" >&2
  echo "(see: cargo tree -p gatehouse-services -e normal -i <name>)" >&2
  exit 1
fi

# Every fuzz target (fuzz/Cargo.toml) runs briefly from its seeds (fuzz/seeds/<target>, rows of the
# table tests) into a scratch corpus, so a parser change that panics on a known-hostile input, or that
# a few seconds of mutation break, fails the suite. Longer runs: fuzz/README.md.
fuzz_smoke() {
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "the fuzz smoke runs need the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
  fi
  if ! cargo fuzz --help >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
  local secs=${FUZZ_SMOKE_SECS:-10} scratch
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  log "cargo +nightly fuzz build (all targets)"
  cargo +nightly fuzz build -O
  for t in $(cargo +nightly fuzz list); do
    log "fuzz smoke: $t for ${secs}s"
    mkdir -p "$scratch/$t"
    seeds=()
    [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
    cargo +nightly fuzz run -O "$t" "$scratch/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>"$scratch/$t.log" || {
      tail -n 60 "$scratch/$t.log" >&2
      echo "fuzz target $t failed; the crashing input is under fuzz/artifacts/$t/" >&2
      exit 1
    }
    grep -E '^stat::number_of_executed_units' "$scratch/$t.log" || true
  done
}
fuzz_smoke

log "cargo nextest run --workspace"
cargo nextest run --workspace --no-fail-fast
