#!/usr/bin/env bash
# The production topology on one machine (`make stack`, `make stack-down`):
#
#   Caddy (HTTPS, its local CA; HTTP only redirects)   the one public listener
#     -> 2 x `deni serve` on loopback ports            PostgreSQL, Redis sessions
#   `deni worker` (M-PESA outbox, callbacks, reconciler, SMS, sweep; metrics on loopback)
#   `deni sandbox` (the local Daraja, its own process)  calls back through Caddy, over HTTPS
#   Prometheus and Alertmanager                         scrape the three Deni processes
#
# Usage: stack.sh up | down | status
# Everything lives in STACK_DIR (default var/stack): pid files in run/, logs in log/, secrets
# in secrets.env (mode 600, made once), the rendered configurations, Caddy's CA and the
# Prometheus and Alertmanager data. Ports: STACK_PORT_BASE (default 18650) and the 9 above it.
#
# DENI_ENVIRONMENT=test, not production: production refuses, rightly, what makes this a
# staging stack (the sandbox's payments are not money, SMS go to the fake outbox, the Daraja
# sandbox speaks plain HTTP on loopback). Everything else is production's shape: real random
# secrets, PostgreSQL, Redis sessions, callbacks to the public https:// URL from allowed
# addresses only, a trusted proxy, a USSD token. `up` ends by listing what production would
# still refuse.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/var/stack}
mkdir -p "$STACK_DIR"
STACK_DIR=$(cd "$STACK_DIR" && pwd)
BIN=${STACK_BIN:-$ROOT/.venv/bin}
DENI=$BIN/deni
PYTHON=$BIN/python

BASE=${STACK_PORT_BASE:-18650}
export STACK_DIR
export STACK_HTTPS_PORT=$BASE
export STACK_HTTP_PORT=$((BASE + 1))
export STACK_CADDY_ADMIN_PORT=$((BASE + 2))
export STACK_API_1_PORT=$((BASE + 3))
export STACK_API_2_PORT=$((BASE + 4))
export STACK_SANDBOX_PORT=$((BASE + 5))
export STACK_WORKER_METRICS_PORT=$((BASE + 6))
export STACK_PROMETHEUS_PORT=$((BASE + 7))
export STACK_ALERTMANAGER_PORT=$((BASE + 8))
DATABASE_URL=${STACK_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/deni_stack}
REDIS_URL=${STACK_REDIS_URL:-redis://127.0.0.1:6379/8}
PUBLIC_URL="https://localhost:$STACK_HTTPS_PORT"

RUN=$STACK_DIR/run
LOG=$STACK_DIR/log
SECRETS=$STACK_DIR/secrets.env
DENI_ENV=$STACK_DIR/deni.env
CADDY_ROOT=$STACK_DIR/caddy/pki/authorities/local/root.crt
SANDBOX_CERT=$STACK_DIR/sandbox-certificate.pem
START_WAIT_S=${STACK_START_WAIT_S:-60}
STOP_WAIT_S=15
# Stopped in this order; started in the reverse one.
PROCESSES=(prometheus alertmanager worker api-2 api-1 sandbox caddy)

say() { echo "stack: $*"; }
die() {
  echo "stack: $*" >&2
  exit 1
}

pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# wait_for WHAT COMMAND...: poll until COMMAND succeeds, or fail naming WHAT and its log.
wait_for() {
  local what=$1 name=$2
  shift 2
  local deadline=$((SECONDS + START_WAIT_S))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      tail -n 20 "$LOG/$name.log" >&2 || true
      die "$name stopped while starting ($what); its log: $LOG/$name.log"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$what not ready within ${START_WAIT_S}s; see $LOG/$name.log"
    sleep 0.3
  done
}

# launch NAME COMMAND...: in the background, in its own session (a Ctrl-C to make leaves it
# alone), from STACK_DIR (no stray .env is read), its output appended to log/NAME.log.
launch() {
  local name=$1
  shift
  if running "$name"; then
    say "$name already running (pid $(pid_of "$name"))"
    return 1
  fi
  (cd "$STACK_DIR" && exec setsid "$@" >>"$LOG/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN/$name.pid"
  say "$name started (pid $!), log: $LOG/$name.log"
}

# "${STACK_ENV[@]}" COMMAND...: COMMAND with the stack's Deni settings and secrets only (the
# DENI_* of the calling shell are dropped).
STACK_ENV=(env -i PATH="$PATH" HOME="$STACK_DIR" LANG=C.UTF-8
  bash -c 'set -a; . "$1"; . "$2"; set +a; shift 2; exec "$@"' stack-env "$DENI_ENV" "$SECRETS")

# deni_process NAME [VAR=VALUE...] -- DENI_ARGS...: a Deni process with the stack's settings,
# plus the VAR=VALUE given.
deni_process() {
  local name=$1
  shift
  local extra=()
  while [ "$1" != "--" ]; do
    extra+=("$1")
    shift
  done
  shift
  launch "$name" "${STACK_ENV[@]}" env "${extra[@]}" "$DENI" "$@"
}

# A one-off Deni command with the same settings (the schema upgrade, the C2B registration).
deni_once() { (cd "$STACK_DIR" && "${STACK_ENV[@]}" "$DENI" "$@"); }

http_ok() { curl -fsS -o /dev/null --max-time 2 "$@"; }

check_tools() {
  [ -x "$DENI" ] || die "no $DENI: run make venv (make stack does)"
  local tool
  for tool in caddy prometheus prometheus-alertmanager curl setsid; do
    command -v "$tool" >/dev/null || die "$tool is missing: make stack installs it with apt as root"
  done
}

check_services() {
  "$PYTHON" - "$DATABASE_URL" <<'PY' || die "PostgreSQL unreachable at $DATABASE_URL (start it, or set STACK_DATABASE_URL)"
import sys
import psycopg
from sqlalchemy.engine import make_url

url = make_url(sys.argv[1])
admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
    found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone()
    if not found:
        connection.execute(f'CREATE DATABASE "{url.database}"')
        print(f"stack: created database {url.database}")
PY
  "$PYTHON" -c 'import redis, sys; redis.Redis.from_url(sys.argv[1], socket_timeout=3).ping()' \
    "$REDIS_URL" || die "Redis unreachable at $REDIS_URL (start it, or set STACK_REDIS_URL)"
}

# Made once and kept: restarting the stack keeps its sessions, tokens and PIN hashes valid.
make_secrets() {
  if [ -s "$SECRETS" ]; then
    chmod 600 "$SECRETS"
    return
  fi
  say "generating $SECRETS (mode 600)"
  (
    umask 077
    "$PYTHON" - >"$SECRETS.tmp" <<'PY'
import secrets

print("# Made once by deploy/stack/stack.sh; one random value per use. Keep it out of git.")
for name in ("JWT_SECRET", "PIN_PEPPER", "CALLBACK_TOKEN", "USSD_TOKEN", "OPS_TOKEN"):
    print(f"DENI_{name}={secrets.token_hex(32)}")

# Web Push's VAPID key pair, as base64url (the private key's 32 bytes, the public point).
import base64
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

key = ec.generate_private_key(ec.SECP256R1())
private = key.private_numbers().private_value.to_bytes(32, "big")
public = key.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
)
for name, raw in (("PRIVATE", private), ("PUBLIC", public)):
    print(f"DENI_VAPID_{name}_KEY={base64.urlsafe_b64encode(raw).decode().rstrip('=')}")
PY
    mv "$SECRETS.tmp" "$SECRETS"
  )
}

# The settings every Deni process shares (no secret: those are in secrets.env).
write_deni_env() {
  cat >"$DENI_ENV" <<EOF
# Written by deploy/stack/stack.sh on every \`up\`: the stack's Deni settings, secrets aside.
DENI_ENVIRONMENT=test
DENI_DATABASE_URL=$DATABASE_URL
DENI_SESSION_STORE=redis
DENI_REDIS_URL=$REDIS_URL
DENI_LOG_JSON=true
DENI_LOG_LEVEL=INFO
DENI_MPESA=on
DENI_DARAJA_ENVIRONMENT=sandbox
DENI_DARAJA_BASE_URL=http://127.0.0.1:$STACK_SANDBOX_PORT
DENI_DARAJA_CERTIFICATE_PEM=$SANDBOX_CERT
DENI_CALLBACK_BASE_URL=$PUBLIC_URL
DENI_CALLBACK_ALLOWED_IPS=127.0.0.1,::1
DENI_USSD_ALLOWED_IPS=127.0.0.1,::1
DENI_TRUSTED_PROXIES=127.0.0.1,::1
DENI_SMS_BACKEND=fake
DENI_VAPID_SUBJECT=mailto:operations@deni.example.co.ke
EOF
}

# Where everything listens, for deploy/stack/check.sh and anyone else.
write_layout() {
  cat >"$STACK_DIR/stack.env" <<EOF
# Written by deploy/stack/stack.sh on every \`up\`: where the stack's processes listen.
STACK_PUBLIC_URL=$PUBLIC_URL
STACK_CADDY_ROOT=$CADDY_ROOT
STACK_HTTPS_PORT=$STACK_HTTPS_PORT
STACK_HTTP_PORT=$STACK_HTTP_PORT
STACK_API_1_PORT=$STACK_API_1_PORT
STACK_API_2_PORT=$STACK_API_2_PORT
STACK_SANDBOX_PORT=$STACK_SANDBOX_PORT
STACK_WORKER_METRICS_PORT=$STACK_WORKER_METRICS_PORT
STACK_PROMETHEUS_PORT=$STACK_PROMETHEUS_PORT
STACK_ALERTMANAGER_PORT=$STACK_ALERTMANAGER_PORT
EOF
}

render_monitoring() {
  mkdir -p "$STACK_DIR/prometheus/data" "$STACK_DIR/alertmanager/data"
  sed -e "s/@STACK_ALERTMANAGER_PORT@/$STACK_ALERTMANAGER_PORT/g" \
    -e "s/@STACK_API_1_PORT@/$STACK_API_1_PORT/g" \
    -e "s/@STACK_API_2_PORT@/$STACK_API_2_PORT/g" \
    -e "s/@STACK_WORKER_METRICS_PORT@/$STACK_WORKER_METRICS_PORT/g" \
    "$ROOT/deploy/stack/prometheus.yml" >"$STACK_DIR/prometheus/prometheus.yml"
  cp "$ROOT/deploy/stack/rules.yml" "$STACK_DIR/prometheus/rules.yml"
  cp "$ROOT/deploy/prometheus/rules/deni.yml" "$STACK_DIR/prometheus/deni.yml"
  cp "$ROOT/deploy/stack/alertmanager.yml" "$STACK_DIR/alertmanager/alertmanager.yml"
  if command -v promtool >/dev/null; then
    promtool check config "$STACK_DIR/prometheus/prometheus.yml" >"$LOG/promtool.log" 2>&1 ||
      die "promtool refuses the Prometheus configuration: $LOG/promtool.log"
  fi
}

start_caddy() {
  launch caddy env XDG_CONFIG_HOME="$STACK_DIR/caddy-config" XDG_DATA_HOME="$STACK_DIR/caddy" \
    caddy run --config "$ROOT/deploy/stack/Caddyfile" --adapter caddyfile || true
  wait_for "Caddy's local CA" caddy test -s "$CADDY_ROOT"
}

start_sandbox() {
  # The sandbox calls Deni back at the public https:// URL: it trusts Caddy's local CA.
  if deni_process sandbox SSL_CERT_FILE="$CADDY_ROOT" -- \
    sandbox --host 127.0.0.1 --port "$STACK_SANDBOX_PORT"; then
    # A fresh key pair on every start: the processes started after it encrypt with this one.
    rm -f "$SANDBOX_CERT"
  fi
  wait_for "the Daraja sandbox" sandbox http_ok "http://127.0.0.1:$STACK_SANDBOX_PORT/sandbox/balances"
  if [ ! -s "$SANDBOX_CERT" ]; then
    curl -fsS "http://127.0.0.1:$STACK_SANDBOX_PORT/sandbox/certificate" >"$SANDBOX_CERT"
    if running api-1 || running api-2 || running worker; then
      say "WARNING: the sandbox restarted under running Deni processes (a new certificate):"
      say "         make stack-down && make stack"
    fi
  fi
}

start_api() {
  local name=$1 port=$2
  # The worker does the background work: these only serve (and store callbacks).
  deni_process "$name" DENI_WORKER_INTERVAL_S=0 DENI_SWEEP_INTERVAL_S=0 DENI_SMS_INTERVAL_S=0 \
    -- serve --host 127.0.0.1 --port "$port" || true
}

up() {
  check_tools
  mkdir -p "$RUN" "$LOG"
  check_services
  make_secrets
  write_deni_env
  write_layout
  render_monitoring
  local started=$SECONDS

  start_caddy
  start_sandbox
  deni_once db upgrade >>"$LOG/db-upgrade.log" 2>&1 || die "deni db upgrade failed: $LOG/db-upgrade.log"
  start_api api-1 "$STACK_API_1_PORT"
  start_api api-2 "$STACK_API_2_PORT"
  wait_for "api-1" api-1 http_ok "http://127.0.0.1:$STACK_API_1_PORT/health"
  wait_for "api-2" api-2 http_ok "http://127.0.0.1:$STACK_API_2_PORT/health"
  wait_for "the API through Caddy" caddy http_ok --cacert "$CADDY_ROOT" "$PUBLIC_URL/health"
  # The sandbox forgets registrations when it restarts: where paybill payments are told.
  deni_once payments register-urls >>"$LOG/register-urls.log" 2>&1 ||
    say "WARNING: C2B registration failed: $LOG/register-urls.log"
  deni_process worker -- worker --metrics-port "$STACK_WORKER_METRICS_PORT" || true
  wait_for "the worker's metrics" worker http_ok "http://127.0.0.1:$STACK_WORKER_METRICS_PORT/metrics"

  launch alertmanager prometheus-alertmanager \
    --config.file="$STACK_DIR/alertmanager/alertmanager.yml" \
    --storage.path="$STACK_DIR/alertmanager/data" \
    --web.listen-address="127.0.0.1:$STACK_ALERTMANAGER_PORT" \
    --cluster.listen-address= || true
  launch prometheus prometheus \
    --config.file="$STACK_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STACK_DIR/prometheus/data" \
    --storage.tsdb.retention.time=2d \
    --web.listen-address="127.0.0.1:$STACK_PROMETHEUS_PORT" || true
  wait_for "Alertmanager" alertmanager http_ok "http://127.0.0.1:$STACK_ALERTMANAGER_PORT/-/ready"
  wait_for "Prometheus" prometheus http_ok "http://127.0.0.1:$STACK_PROMETHEUS_PORT/-/ready"

  say "up in $((SECONDS - started))s"
  cat <<EOF

  Deni:          $PUBLIC_URL/app/   (HTTPS from Caddy's local CA; http://localhost:$STACK_HTTP_PORT redirects)
  CA to trust:   $CADDY_ROOT
  A loan:        SSL_CERT_FILE=$CADDY_ROOT $DENI demo --url $PUBLIC_URL
                 (with the stack's settings: deploy/stack/check.sh does it, and more)
  Sandbox:       http://127.0.0.1:$STACK_SANDBOX_PORT/sandbox/balances
  Prometheus:    http://127.0.0.1:$STACK_PROMETHEUS_PORT/targets
  Alertmanager:  http://127.0.0.1:$STACK_ALERTMANAGER_PORT/api/v2/alerts
  Logs, pids:    $LOG/, $RUN/
  Stop:          make stack-down

EOF
  production_gap
}

# What DENI_ENVIRONMENT=production would refuse in these settings: the staging stack's
# honest difference from production.
production_gap() {
  say "what production would still refuse here:"
  (cd "$STACK_DIR" && "${STACK_ENV[@]}" "$PYTHON" -c '
from deni.config import Settings
from deni.config_checks import production_problems
for problem in production_problems(Settings()):
    print(f"  - {problem}")
')
}

stop_one() {
  local name=$1 pid
  pid=$(pid_of "$name")
  if [ -z "$pid" ]; then return; fi
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    local deadline=$((SECONDS + STOP_WAIT_S))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name (pid $pid) ignored SIGTERM for ${STOP_WAIT_S}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "$name stopped (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

down() {
  local name
  for name in "${PROCESSES[@]}"; do stop_one "$name"; done
}

status() {
  local name state=0
  for name in "${PROCESSES[@]}"; do
    if running "$name"; then
      say "$name running (pid $(pid_of "$name"))"
    else
      say "$name not running"
      state=3
    fi
  done
  return $state
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: $0 up | down | status" ;;
esac
