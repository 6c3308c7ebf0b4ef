#!/usr/bin/env bash
# Runs Gatehouse's whole test suite: unit, storage stories and HTTP tests on SQLite and PostgreSQL.
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

ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  log "installing Chromium (Debian package) for the browser test"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

ensure_browser_test_packages() {
  # playwright-core drives Debian's Chromium; it never downloads a browser of its own.
  if [ -d tests/browser/node_modules/playwright-core ]; then return; fi
  log "installing the browser test's npm packages"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error)
}

ensure_oauth_client_packages() {
  # Third-party OAuth clients the suite runs against a real Gatehouse: openid-client (npm), Authlib (PyPI).
  if [ ! -d tests/oauth-clients/node_modules/openid-client ]; then
    log "installing openid-client for the OAuth client test"
    (cd tests/oauth-clients && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -x tests/oauth-clients/.venv/bin/python ] || ! tests/oauth-clients/.venv/bin/python -c 'import authlib, requests' 2>/dev/null; then
    log "installing Authlib for the OAuth client test"
    python3 -m venv tests/oauth-clients/.venv
    tests/oauth-clients/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/oauth-clients/requirements.txt
  fi
}

ensure_webhook_receiver_packages() {
  # Receivers that verify deliveries with Stripe's SDKs (npm, PyPI) and the standardwebhooks packages.
  if [ ! -d tests/webhook-receivers/node_modules/stripe ]; then
    log "installing the webhook receivers' npm packages"
    (cd tests/webhook-receivers && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -x tests/webhook-receivers/.venv/bin/python ] || ! tests/webhook-receivers/.venv/bin/python -c 'import stripe, standardwebhooks' 2>/dev/null; then
    log "installing the webhook receivers' PyPI packages"
    python3 -m venv tests/webhook-receivers/.venv
    tests/webhook-receivers/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/webhook-receivers/requirements.txt
  fi
}

ensure_postgres
ensure_redis
ensure_oauth_client_packages
ensure_webhook_receiver_packages
ensure_chromium
ensure_browser_test_packages
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

log "cargo nextest run --workspace"
cargo nextest run --workspace --no-fail-fast
